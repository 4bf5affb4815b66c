//! The gateway's test kit, shared by the integration tests.
#![allow(dead_code, unused_imports)]
pub use gateway::testkit::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `tongban serve` for `files` as a child process (logging at
/// `log`); returns it with its base URL once it listens.
pub fn spawn_serve(files: &CityFiles, log: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongban"))
        .args(["serve", "--config"])
        .arg(&files.config_path)
        .env("TONGBAN_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tongban");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// xorshift64*: reproducible random delays from a printed seed.
pub struct Rng(pub u64);
impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
