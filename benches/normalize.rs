//! Throughput of `normalize` against a bare `serde_json::from_slice::<Value>` of the same bytes,
//! per provider (docs/design.md §7: the ratio must be at least 1.0).
//!
//! Run: `cargo bench --bench normalize`. Each group holds both functions over the same set of
//! verbatim fixtures, so criterion's throughput figures compare directly.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eviction_router::event::Provider;
use eviction_router::providers;

/// The fixture bodies of one provider that normalise to at least one event.
fn bodies(provider: Provider) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider.as_str());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).expect("readable fixture"))
        .filter(|b| providers::normalize(provider, b).is_ok_and(|p| !p.events.is_empty()))
        .collect()
}

fn bench(c: &mut Criterion) {
    for provider in Provider::ALL {
        let bodies = bodies(*provider);
        assert!(!bodies.is_empty(), "no fixtures for {provider}");
        let mut group = c.benchmark_group(provider.as_str());
        group.throughput(Throughput::Elements(bodies.len() as u64));
        group.bench_function("normalize", |b| {
            b.iter(|| {
                for body in &bodies {
                    black_box(providers::normalize(*provider, black_box(body)).ok());
                }
            })
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                for body in &bodies {
                    black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).ok());
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
