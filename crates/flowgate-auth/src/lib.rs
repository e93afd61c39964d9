//! flowgate-auth
