//! Tests of the core: golden files for every fixture, the JSON Schema, the CLI contract, and
//! property tests that throw arbitrary input at every normaliser. One binary, several modules.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod chart;
mod cli;
mod golden;
mod props;
