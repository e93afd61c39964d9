//! One module per subcommand.

pub mod deploy;
pub mod keys;
pub mod migrate;
pub mod openapi;
pub mod run;
pub mod serve;
pub mod test;
