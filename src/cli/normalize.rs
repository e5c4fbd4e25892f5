//! `normalize` and `replay`: the normalisers on files, for operators and acceptance checks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{EXIT_IO, EXIT_MALFORMED, EXIT_NO_EVENT, EXIT_OK};
use crate::event::{Kind, Provider};
use crate::providers::{self, MAX_MESSAGE_BYTES, Parsed};

/// Reads at most one byte more than the limit, so an oversized body is told apart without
/// reading all of it.
fn read_body(input: &Path) -> io::Result<Vec<u8>> {
    let limit = (MAX_MESSAGE_BYTES + 1) as u64;
    let mut body = Vec::new();
    if input == Path::new("-") {
        io::stdin().lock().take(limit).read_to_end(&mut body)?;
    } else {
        File::open(input)?.take(limit).read_to_end(&mut body)?;
    }
    Ok(body)
}

fn print_events(out: &mut impl Write, parsed: &Parsed) -> io::Result<()> {
    for event in &parsed.events {
        writeln!(out, "{}", event.to_json_line())?;
    }
    Ok(())
}

pub(super) fn normalize(provider: Provider, input: &Path) -> u8 {
    let body = match read_body(input) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", input.display());
            return EXIT_IO;
        }
    };
    match providers::normalize(provider, &body) {
        Ok(parsed) if parsed.events.is_empty() => {
            for ignored in &parsed.ignored {
                eprintln!("ignored: {ignored}");
            }
            EXIT_NO_EVENT
        }
        Ok(parsed) => {
            let mut out = io::stdout().lock();
            if let Err(e) = print_events(&mut out, &parsed).and_then(|()| out.flush()) {
                eprintln!("error: cannot write to stdout: {e}");
                return EXIT_IO;
            }
            for ignored in &parsed.ignored {
                eprintln!("ignored: {ignored}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: malformed {provider} message ({}): {e}", e.kind());
            EXIT_MALFORMED
        }
    }
}

/// The files a replay visits: each file given, and the `*.json` files under each directory, in
/// name order.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "json") {
                collect(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The provider named by the nearest `aws`, `azure` or `gcp` directory on the path.
fn provider_of(path: &Path) -> Option<Provider> {
    path.parent()?.components().rev().find_map(|c| {
        c.as_os_str()
            .to_str()
            .and_then(|s| s.parse::<Provider>().ok())
    })
}

#[derive(Default)]
struct Tally {
    files: usize,
    events: BTreeMap<Kind, usize>,
    ignored: usize,
    malformed: usize,
    unreadable: usize,
}

pub(super) fn replay(provider: Option<Provider>, paths: &[PathBuf]) -> u8 {
    let mut files = Vec::new();
    let mut tally = Tally::default();
    for path in paths {
        if let Err(e) = collect(path, &mut files) {
            eprintln!("error: cannot read {}: {e}", path.display());
            tally.unreadable += 1;
        }
    }
    let mut out = io::stdout().lock();
    for file in &files {
        tally.files += 1;
        let Some(provider) = provider.or_else(|| provider_of(file)) else {
            eprintln!(
                "error: {}: cannot tell the provider from the path; pass --provider",
                file.display()
            );
            tally.unreadable += 1;
            continue;
        };
        let body = match read_body(file) {
            Ok(body) => body,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                tally.unreadable += 1;
                continue;
            }
        };
        match providers::normalize(provider, &body) {
            Ok(parsed) => {
                if let Err(e) = print_events(&mut out, &parsed) {
                    eprintln!("error: cannot write to stdout: {e}");
                    return EXIT_IO;
                }
                for event in &parsed.events {
                    *tally.events.entry(event.data.kind).or_default() += 1;
                }
                for ignored in &parsed.ignored {
                    eprintln!("ignored: {}: {ignored}", file.display());
                }
                tally.ignored += parsed.ignored.len();
            }
            Err(e) => {
                eprintln!("malformed: {}: {e}", file.display());
                tally.malformed += 1;
            }
        }
    }
    if out.flush().is_err() {
        return EXIT_IO;
    }
    drop(out);
    summarise(&tally);
    if tally.unreadable > 0 {
        EXIT_IO
    } else if tally.malformed > 0 {
        EXIT_MALFORMED
    } else {
        EXIT_OK
    }
}

fn summarise(tally: &Tally) {
    let total: usize = tally.events.values().sum();
    eprintln!(
        "replayed {} files: {total} events, {} ignored, {} malformed, {} unreadable",
        tally.files, tally.ignored, tally.malformed, tally.unreadable
    );
    for kind in Kind::ALL {
        if let Some(n) = tally.events.get(kind) {
            eprintln!("  {:<26} {n}", kind.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_comes_from_the_nearest_directory() {
        assert_eq!(
            provider_of(Path::new("examples/events/gcp/x.json")),
            Some(Provider::Gcp)
        );
        assert_eq!(
            provider_of(Path::new("aws/sub/azure/x.json")),
            Some(Provider::Azure)
        );
        assert_eq!(provider_of(Path::new("x.json")), None);
    }
}
