//! Tests of the core: golden files for every fixture, the JSON Schema, the CLI contract,
//! property tests that throw arbitrary input at every normaliser, and the `report` command over
//! a recorded stream. One binary, several modules.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod chart;
mod cli;
mod golden;
mod props;
mod report;
mod report_stream;
