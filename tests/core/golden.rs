//! Every fixture under `tests/fixtures/<provider>/` normalises to exactly its golden file under
//! `tests/golden/<provider>/`, and every event validates against `docs/schema/event.v1.json`.
//! `UPDATE_GOLDEN=1 cargo test --test core golden` rewrites the golden files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use eviction_router::event::{Event, Provider};
use eviction_router::providers::{self, Parsed};
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn render(result: Result<Parsed, providers::ParseError>) -> Value {
    match result {
        Ok(parsed) => json!({
            "events": parsed.events,
            "ignored": parsed.ignored.iter().map(|i| json!({
                "reason": i.reason.as_str(),
                "detail": i.detail,
            })).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "error": { "kind": e.kind(), "message": e.to_string() } }),
    }
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("docs/schema/event.v1.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the event schema is a valid JSON Schema")
}

fn assert_valid(validator: &jsonschema::Validator, event: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} violates the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_fixture_matches_its_golden_file_and_the_schema() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let validator = schema();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for provider in Provider::ALL {
        let fixtures = root().join("tests/fixtures").join(provider.as_str());
        let golden_dir = root().join("tests/golden").join(provider.as_str());
        for fixture in json_files(&fixtures) {
            let body = std::fs::read(&fixture).unwrap();
            let actual = render(providers::normalize(*provider, &body));
            if let Some(events) = actual.get("events").and_then(Value::as_array) {
                for event in events {
                    assert_valid(&validator, event, &fixture.display().to_string());
                }
            }
            let golden = golden_dir.join(fixture.file_name().unwrap());
            let pretty = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&golden_dir).unwrap();
                std::fs::write(&golden, &pretty).unwrap();
            } else {
                match std::fs::read_to_string(&golden) {
                    Ok(expected) if expected == pretty => {}
                    Ok(_) => mismatches.push(format!(
                        "{} differs from {}:\n{pretty}",
                        fixture.display(),
                        golden.display()
                    )),
                    Err(_) => mismatches.push(format!("{} has no golden file", fixture.display())),
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} fixtures found");
    assert!(
        mismatches.is_empty(),
        "{}\n(rerun with UPDATE_GOLDEN=1 to accept)",
        mismatches.join("\n")
    );
}

#[test]
fn every_golden_file_has_a_fixture() {
    for provider in Provider::ALL {
        let fixtures: BTreeSet<_> =
            json_files(&root().join("tests/fixtures").join(provider.as_str()))
                .into_iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect();
        for golden in json_files(&root().join("tests/golden").join(provider.as_str())) {
            assert!(
                fixtures.contains(golden.file_name().unwrap()),
                "{} is stale: no fixture of that name",
                golden.display()
            );
        }
    }
}

/// Each row of the mapping tables (docs/design.md §3) is covered by a fixture: the (provider,
/// kind) and (provider, ignore reason) pairs the fixtures produce include every expected one.
#[test]
fn fixtures_cover_every_mapping_row() {
    let mut seen = BTreeSet::new();
    for provider in Provider::ALL {
        for fixture in json_files(&root().join("tests/fixtures").join(provider.as_str())) {
            let parsed =
                providers::normalize(*provider, &std::fs::read(&fixture).unwrap()).unwrap();
            for e in &parsed.events {
                seen.insert(format!(
                    "{provider} {} {}",
                    e.data.kind, e.data.provider_event
                ));
            }
            for i in &parsed.ignored {
                seen.insert(format!("{provider} ignored {}", i.reason.as_str()));
            }
        }
    }
    let expected = [
        "aws interruption EC2 Spot Instance Interruption Warning",
        "aws interruption EC2 Capacity Reservation Instance Interruption Warning",
        "aws rebalance_recommendation EC2 Instance Rebalance Recommendation",
        "aws termination EC2 Instance State-change Notification",
        "aws scheduled_maintenance AWS Health Event",
        "aws termination EC2 Instance-terminate Lifecycle Action",
        "aws termination autoscaling:EC2_INSTANCE_TERMINATING",
        "aws ignored test_notification",
        "aws ignored unknown_type",
        "aws ignored not_actionable",
        "azure interruption Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted",
        "azure termination Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted",
        "azure scheduled_maintenance Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted",
        "azure interruption Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated",
        "azure scheduled_maintenance Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated",
        "azure ignored not_actionable",
        "azure ignored subscription_validation",
        "gcp interruption compute.instances.preempted",
        "gcp termination compute.instances.hostError",
        "gcp termination compute.instances.terminateOnHostMaintenance",
        "gcp scheduled_maintenance compute.instances.upcomingMaintenance",
        "gcp scheduled_maintenance compute.instances.upcomingInfraMaintenance",
        "gcp ignored not_actionable",
        "gcp ignored unknown_type",
    ];
    let missing: Vec<_> = expected.iter().filter(|e| !seen.contains(**e)).collect();
    assert!(
        missing.is_empty(),
        "no fixture covers: {missing:?}\nseen: {seen:#?}"
    );
}

/// An event survives a JSON round trip unchanged, for every event every fixture produces.
#[test]
fn every_normalised_event_round_trips() {
    for provider in Provider::ALL {
        for fixture in json_files(&root().join("tests/fixtures").join(provider.as_str())) {
            let parsed =
                providers::normalize(*provider, &std::fs::read(&fixture).unwrap()).unwrap();
            for event in parsed.events {
                let back: Event = serde_json::from_str(&event.to_json_line()).unwrap();
                assert_eq!(back, event, "{}", fixture.display());
                let wire: serde_json::Value = serde_json::from_str(&event.to_json_line()).unwrap();
                assert_eq!(
                    wire["time"],
                    serde_json::to_value(back.data.occurred_at).unwrap()
                );
                assert_eq!(wire["subject"], back.data.instance.id.as_str());
            }
        }
    }
}
