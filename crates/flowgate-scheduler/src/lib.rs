//! flowgate-scheduler
