//! flowgate-script
