//! flowgate-store
