//! `report`: per-pool Spot statistics over a normalised stream, as a table (or JSON), and as a
//! self-contained HTML page with charts.
//!
//! The stream is read in blocks of 4 MiB (one buffer, reused); the lines of a block are parsed
//! into borrowed [`Line`]s that hold only the fields the statistics read (the two halves of a
//! block on two threads), and fed in order to [`Analytics`], whose memory is bounded whatever
//! the length of the stream.

mod html;
mod table;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};

use serde::Serialize;

use super::{EXIT_IO, EXIT_MALFORMED, EXIT_NO_EVENT, EXIT_OK};
use crate::analytics::{
    Analytics, CapacityStats, Comparison, Escaped, Line, LineError, Observation, Published, Stats,
    find_byte,
};

/// Lines longer than this are malformed (the router's events are a few KiB).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// How many malformed lines are named on stderr; the rest are counted.
const MALFORMED_SHOWN: usize = 5;

/// The arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The normalised stream: JSON lines as the router writes them (the stdout sink, a webhook
    /// capture), or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Also write a self-contained HTML page with charts to this file.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// The clouds' published interruption rates (CSV or JSON: provider, instance_type,
    /// location, interruption_rate), shown beside the observed ones.
    #[arg(long, value_name = "FILE")]
    pub published: Option<PathBuf>,
    /// Print the statistics as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What reading the stream came to.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Lines {
    /// Lines read (blank ones included).
    pub read: u64,
    /// Lines that are not a normalised event.
    pub malformed: u64,
    /// The first few malformed lines: `line N: why`.
    #[serde(skip)]
    pub shown: Vec<String>,
}

/// Bytes read at a time: the lines of a block are parsed (on two threads) into observations
/// that borrow it.
const BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// One line of a block, as far as a parsing thread takes it.
#[allow(clippy::large_enum_variant)] // Nearly every line is `Observed`: a box would allocate per line.
enum Item<'a> {
    Blank,
    TooLong,
    Malformed(LineError),
    /// A kind the statistics do not know.
    Unknown,
    /// The observation, borrowing the block.
    Observed(Observation<'a>),
    /// A line with escaped strings, parsed again by the observing thread.
    Escaped(&'a [u8]),
}

fn item<'a>(raw: &'a [u8], text: Option<&'a str>) -> Item<'a> {
    let line = match text {
        Some(text) => Line::parse_str(text),
        None => Line::parse(raw),
    };
    match line.and_then(|l| l.detached_observation()) {
        Ok(Ok(Some(obs))) => Item::Observed(obs),
        Ok(Ok(None)) => Item::Unknown,
        Ok(Err(Escaped)) => Item::Escaped(raw),
        Err(e) => Item::Malformed(e),
    }
}

fn newline(bytes: &[u8]) -> Option<usize> {
    find_byte(bytes, b'\n')
}

fn parse_lines(piece: &[u8]) -> Vec<Item<'_>> {
    // One UTF-8 check of the whole piece (cheaper than one per line); when it fails, each
    // line is checked on its own so that only the bad ones are malformed.
    let text = std::str::from_utf8(piece).ok();
    // Lines of the router's events are about a kilobyte.
    let mut items = Vec::with_capacity(piece.len() / 512 + 1);
    let mut from = 0;
    while from < piece.len() {
        let to = newline(&piece[from..]).map_or(piece.len(), |at| from + at);
        let (start, end) = trimmed(piece, from, to);
        from = to + 1;
        let line = &piece[start..end];
        items.push(if line.is_empty() {
            Item::Blank
        } else if line.len() > MAX_LINE_BYTES {
            Item::TooLong
        } else {
            // `\n` and ASCII whitespace are char boundaries.
            item(line, text.and_then(|t| t.get(start..end)))
        });
    }
    items
}

/// `bytes[from..to]` without its ASCII whitespace at both ends, as a range.
fn trimmed(bytes: &[u8], mut from: usize, mut to: usize) -> (usize, usize) {
    while from < to && bytes[from].is_ascii_whitespace() {
        from += 1;
    }
    while to > from && bytes[to - 1].is_ascii_whitespace() {
        to -= 1;
    }
    (from, to)
}

/// A piece of a block: what a thread takes at a time. Small enough that two threads finish
/// a block together, large enough that taking one costs nothing.
const PIECE_BYTES: usize = 64 * 1024;

/// A block cut into pieces of whole lines.
fn pieces(mut block: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(block.len() / PIECE_BYTES + 1);
    while block.len() > PIECE_BYTES {
        let cut = newline(&block[PIECE_BYTES..]).map_or(block.len(), |at| PIECE_BYTES + at + 1);
        let (piece, rest) = block.split_at(cut);
        out.push(piece);
        block = rest;
    }
    if !block.is_empty() {
        out.push(block);
    }
    out
}

/// Parses and observes the lines of a block, in order. With two cores, a second thread parses
/// pieces while this one parses pieces too and observes each piece as soon as it and those
/// before it are parsed, so both cores stay busy and the order of the stream is kept. When
/// nothing is left to parse it blocks on the other thread's next result (no spinning).
fn process_block(block: &[u8], parallel: bool, analytics: &mut Analytics, lines: &mut Lines) {
    let pieces = pieces(block);
    if !parallel || pieces.len() < 2 {
        for piece in pieces {
            observe_items(&parse_lines(piece), analytics, lines);
        }
        return;
    }
    let pieces = &pieces;
    let next = AtomicUsize::new(0);
    let next = &next;
    let take = move || {
        let k = next.fetch_add(1, Ordering::Relaxed);
        (k < pieces.len()).then_some(k)
    };
    std::thread::scope(|s| {
        let (done, results) = mpsc::channel();
        s.spawn(move || {
            while let Some(k) = take() {
                if done.send((k, parse_lines(pieces[k]))).is_err() {
                    return;
                }
            }
        });
        let mut parsed: Vec<Option<Vec<Item<'_>>>> = pieces.iter().map(|_| None).collect();
        for i in 0..pieces.len() {
            loop {
                for (k, items) in results.try_iter() {
                    parsed[k] = Some(items);
                }
                if let Some(items) = parsed[i].take() {
                    observe_items(&items, analytics, lines);
                    break;
                }
                match take() {
                    Some(k) => parsed[k] = Some(parse_lines(pieces[k])),
                    // Piece `i` is the other thread's: wait for it (or, should that thread
                    // have died, parse it here).
                    None => match results.recv() {
                        Ok((k, items)) => parsed[k] = Some(items),
                        Err(_) => parsed[i] = Some(parse_lines(pieces[i])),
                    },
                }
            }
        }
    });
}

fn observe_items(items: &[Item<'_>], analytics: &mut Analytics, lines: &mut Lines) {
    for item in items {
        lines.read += 1;
        match item {
            Item::Blank => {}
            Item::TooLong => lines.malformed(format_args!("longer than {MAX_LINE_BYTES} bytes")),
            Item::Malformed(e) => lines.malformed(format_args!("{e}")),
            Item::Unknown => analytics.note_unknown_kind(),
            Item::Observed(obs) => analytics.observe(obs),
            Item::Escaped(raw) => match Line::parse(raw).and_then(|l| {
                let obs = l.observation()?;
                Ok(obs.map(|o| analytics.observe(&o)).is_some())
            }) {
                Ok(true) => {}
                Ok(false) => analytics.note_unknown_kind(),
                Err(e) => lines.malformed(format_args!("{e}")),
            },
        }
    }
}

/// What the reading thread hands over.
enum Chunk {
    /// Complete lines (at the end of the input, the last one too).
    Lines(Vec<u8>),
    /// A line longer than a block, discarded to its end.
    TooLong,
}

/// The reading thread: blocks of complete lines, the partial last line carried over to the
/// next block; buffers come back through `empty` for reuse.
fn read_chunks(
    mut input: impl Read,
    block: usize,
    full: SyncSender<io::Result<Chunk>>,
    empty: Receiver<Vec<u8>>,
) {
    let mut tail: Vec<u8> = Vec::new();
    let mut discarding = false;
    loop {
        let mut buf = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(block));
        buf.clear();
        buf.append(&mut tail);
        let want = block.saturating_sub(buf.len()).max(1);
        // `read_to_end` on `Take` fills the spare capacity without zeroing it first.
        let n = match (&mut input).take(want as u64).read_to_end(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = full.send(Err(e));
                return;
            }
        };
        let eof = n < want;
        if discarding {
            match newline(&buf) {
                Some(at) => {
                    discarding = false;
                    buf.drain(..=at);
                }
                None if eof => return,
                None => continue,
            }
        }
        if eof {
            let _ = full.send(Ok(Chunk::Lines(buf)));
            return;
        }
        let chunk = match buf.iter().rposition(|b| *b == b'\n') {
            Some(at) => {
                tail.extend_from_slice(&buf[at + 1..]);
                buf.truncate(at + 1);
                Chunk::Lines(buf)
            }
            None if buf.len() >= block => {
                discarding = true;
                Chunk::TooLong
            }
            None => {
                tail = buf;
                continue;
            }
        };
        if full.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// Reads the stream into `analytics`: one thread reads blocks of [`BLOCK_BYTES`], two parse
/// their lines, and this one (one of the two) observes them in order. No line is copied.
pub fn read_stream(input: impl Read + Send, analytics: &mut Analytics) -> io::Result<Lines> {
    read_blocks(input, analytics, BLOCK_BYTES)
}

fn read_blocks(
    input: impl Read + Send,
    analytics: &mut Analytics,
    block: usize,
) -> io::Result<Lines> {
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    std::thread::scope(|s| {
        let (full_tx, full) = mpsc::sync_channel(1);
        let (empty, empty_rx) = mpsc::channel();
        s.spawn(move || read_chunks(input, block, full_tx, empty_rx));
        let mut lines = Lines::default();
        for chunk in full {
            match chunk? {
                Chunk::TooLong => {
                    lines.read += 1;
                    lines.malformed(format_args!("longer than {MAX_LINE_BYTES} bytes"));
                }
                Chunk::Lines(buf) => {
                    process_block(&buf, parallel, analytics, &mut lines);
                    let _ = empty.send(buf);
                }
            }
        }
        Ok(lines)
    })
}

impl Lines {
    fn malformed(&mut self, why: std::fmt::Arguments<'_>) {
        self.malformed += 1;
        if self.shown.len() < MALFORMED_SHOWN {
            self.shown.push(format!("line {}: {why}", self.read));
        }
    }
}

/// A (type, zone) row with its published rate, if any matched.
#[derive(Debug, Serialize)]
struct Compared<'a> {
    instance_type: &'a str,
    zone: &'a str,
    #[serde(flatten)]
    comparison: Comparison,
}

/// The `--json` output.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    lines: &'a Lines,
    #[serde(flatten)]
    stats: &'a Stats,
    published: Vec<Compared<'a>>,
}

/// Everything the outputs are made of.
#[derive(Debug)]
pub struct Report {
    /// The statistics at the latest event.
    pub stats: Stats,
    /// What reading came to.
    pub lines: Lines,
    /// Per row of `stats.capacity`, its published rate.
    pub published: Vec<Option<Comparison>>,
    /// Whether published rates were given at all.
    pub has_published: bool,
}

impl Report {
    /// The report of an analysed stream.
    pub fn new(analytics: &Analytics, lines: Lines, published: Option<&Published>) -> Report {
        let at = analytics.latest().unwrap_or_default();
        let stats = analytics.stats(at);
        let compare = |c: &CapacityStats| published.and_then(|p| p.compare(c));
        Report {
            published: stats.capacity.iter().map(compare).collect(),
            has_published: published.is_some(),
            stats,
            lines,
        }
    }

    /// The statistics as one JSON object (`--json`).
    pub fn to_json(&self) -> String {
        let published = self
            .stats
            .capacity
            .iter()
            .zip(&self.published)
            .filter_map(|(c, p)| {
                Some(Compared {
                    instance_type: &c.instance_type,
                    zone: &c.zone,
                    comparison: p.clone()?,
                })
            })
            .collect();
        let out = JsonReport {
            lines: &self.lines,
            stats: &self.stats,
            published,
        };
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| String::from("{}"))
    }

    /// The table.
    pub fn to_table(&self) -> String {
        table::render(self)
    }

    /// The HTML page.
    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

fn open(input: &Path) -> io::Result<Box<dyn Read + Send>> {
    Ok(if input == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(input)?)
    })
}

pub(super) fn report(args: ReportArgs) -> u8 {
    let published = match &args.published {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return EXIT_IO;
            }
            Ok(text) => match Published::parse(&text) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("error: malformed published rates {}: {e}", path.display());
                    return EXIT_MALFORMED;
                }
            },
        },
    };
    let mut analytics = Analytics::default();
    let lines = match open(&args.input).and_then(|r| read_stream(r, &mut analytics)) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.input.display());
            return EXIT_IO;
        }
    };
    for shown in &lines.shown {
        eprintln!("malformed: {shown}");
    }
    if lines.malformed > lines.shown.len() as u64 {
        eprintln!(
            "malformed: {} more lines",
            lines.malformed - lines.shown.len() as u64
        );
    }
    let report = Report::new(&analytics, lines, published.as_ref());
    let text = if args.json {
        report.to_json() + "\n"
    } else {
        report.to_table()
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("error: cannot write to stdout: {e}");
        return EXIT_IO;
    }
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, report.to_html())
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return EXIT_IO;
    }
    let events = analytics.latest().is_some();
    if report.lines.malformed > 0 {
        EXIT_MALFORMED
    } else if !events {
        eprintln!("no events in {}", args.input.display());
        EXIT_NO_EVENT
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"specversion":"1.0","data":{"kind":"interruption","provider":"aws","instance":{"id":"ID"},"occurred_at":"2026-11-23T10:00:00Z","details":{"pool":"web"}}}"#;

    fn stream(n: usize) -> String {
        (0..n)
            .map(|i| LINE.replace("ID", &format!("i-{i}")) + "\n")
            .collect()
    }

    fn read(text: &str, block: usize) -> (Lines, Stats) {
        let mut a = Analytics::default();
        let lines = read_blocks(text.as_bytes(), &mut a, block).unwrap();
        let stats = a.stats(a.latest().unwrap_or_default());
        (lines, stats)
    }

    #[test]
    fn lines_across_blocks_are_read_whole() {
        let text = stream(3_000);
        let (whole, expected) = read(&text, BLOCK_BYTES);
        assert_eq!((whole.read, whole.malformed), (3_000, 0));
        assert_eq!(expected.total.stats.interruptions, 3_000);
        for block in [200, 1_000, 4_096, 65_537, 300_001] {
            let (lines, stats) = read(&text, block);
            assert_eq!((lines.read, lines.malformed), (3_000, 0), "block {block}");
            assert_eq!(stats, expected, "block {block}");
        }
        // No final newline.
        let (lines, _) = read(text.trim_end(), 1_000);
        assert_eq!((lines.read, lines.malformed), (3_000, 0));
    }

    #[test]
    fn a_line_longer_than_a_block_is_malformed_and_skipped() {
        let long = format!("{{\"x\":\"{}\"}}\n", "a".repeat(5_000));
        let text = format!("{}{long}{}", stream(3), stream(2));
        let (lines, stats) = read(&text, 1_000);
        assert_eq!((lines.read, lines.malformed), (6, 1));
        assert_eq!(lines.shown, ["line 4: longer than 1048576 bytes"]);
        assert_eq!(stats.events.interruption, 5);
        // At the very end, without a newline.
        let text = format!("{}{}", stream(2), long.trim_end());
        let (lines, _) = read(&text, 1_000);
        assert_eq!((lines.read, lines.malformed), (3, 1));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_malformed_alone() {
        let mut text = stream(3).into_bytes();
        text.extend_from_slice(b"{\"x\":\"\xff\"}\n");
        text.extend_from_slice(stream(2).as_bytes());
        let mut a = Analytics::default();
        let lines = read_blocks(&text[..], &mut a, BLOCK_BYTES).unwrap();
        assert_eq!((lines.read, lines.malformed), (6, 1));
        assert!(
            lines.shown[0].starts_with("line 4: not UTF-8"),
            "{:?}",
            lines.shown
        );
        assert_eq!(a.stats(a.latest().unwrap()).events.interruption, 5);
    }
}
