//! The `ordo` command line: [`args`] says what each command takes, [`commands`] runs it.

pub mod args;
pub mod commands;
