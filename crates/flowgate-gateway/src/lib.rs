//! flowgate-gateway
