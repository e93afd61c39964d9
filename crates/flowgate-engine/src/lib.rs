//! flowgate-engine
