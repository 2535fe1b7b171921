//! Gates, receipts and pipelines: denials, collect-all, commits that report
//! what the store wrote, and bypasses that are recorded.

use batpak::pipeline::{BypassRecord, BYPASS_ENTITY, BYPASS_KIND};
use batpak::prelude::*;

const TRANSFER: EventKind = EventKind::custom(0x4, 1);

struct Policy {
    limit_cents: u64,
    sanctioned: Vec<&'static str>,
}

struct LimitGate;

impl Gate<Policy> for LimitGate {
    fn name(&self) -> &str {
        "limit"
    }
    fn check(&self, policy: &Policy, proposal: &Proposal) -> Result<(), String> {
        match proposal.payload()["cents"].as_u64() {
            Some(cents) if cents <= policy.limit_cents => Ok(()),
            Some(cents) => Err(format!(
                "{cents} cents exceeds the limit of {}",
                policy.limit_cents
            )),
            None => Err("no amount".to_string()),
        }
    }
}

fn pipeline(set: GateSet<Policy>) -> Pipeline<Policy> {
    Pipeline::new(
        set.with(LimitGate)
            .with(gate_fn(
                "sanctions",
                |policy: &Policy, proposal: &Proposal| {
                    let to = proposal.payload()["to"].as_str().unwrap_or_default();
                    if policy.sanctioned.contains(&to) {
                        Err(format!("{to} is sanctioned"))
                    } else {
                        Ok(())
                    }
                },
            ))
            .with(gate_fn("own-scope", |_: &Policy, proposal: &Proposal| {
                if proposal.coordinate().scope() == "bank" && proposal.kind() == TRANSFER {
                    Ok(())
                } else {
                    Err("wrong scope or kind".to_string())
                }
            })),
    )
}

fn policy() -> Policy {
    Policy {
        limit_cents: 10_000,
        sanctioned: vec!["mallory"],
    }
}

fn transfer(cents: u64, to: &str) -> Proposal {
    let from = Coordinate::new("account:alice", "bank").unwrap();
    Proposal::new(
        &from,
        TRANSFER,
        &serde_json::json!({ "cents": cents, "to": to }),
    )
    .unwrap()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    (dir, store)
}

#[test]
fn a_passed_receipt_commits_and_reports_what_the_store_wrote() {
    let (_dir, store) = open();
    let pipeline = pipeline(GateSet::fail_fast());
    let receipt = pipeline.evaluate(&policy(), transfer(500, "bob")).unwrap();
    assert_eq!(receipt.gates_passed(), ["limit", "sanctions", "own-scope"]);
    assert_eq!(receipt.proposal().payload()["to"], "bob");

    let committed = receipt.commit(&store).unwrap();
    let stored = store.get(committed.receipt.event_id).unwrap().unwrap();
    assert_eq!(committed.receipt.sequence, stored.header.sequence);
    assert_eq!(committed.receipt.clock, stored.header.clock);
    assert_eq!(committed.receipt.hash, stored.hash);
    #[cfg(feature = "blake3")]
    assert!(committed.receipt.hash.is_some());
    assert_eq!(committed.coordinate, stored.coordinate);
    assert_eq!(committed.kind, TRANSFER);
    assert_eq!(
        stored.payload,
        serde_json::json!({"cents": 500, "to": "bob"})
    );
    assert!(committed.bypass_record.is_none());

    let second = pipeline
        .evaluate(&policy(), transfer(1, "carol"))
        .unwrap()
        .commit(&store)
        .unwrap();
    assert_eq!(second.receipt.sequence, committed.receipt.sequence + 1);
    assert_eq!(second.receipt.clock, 2);
}

#[test]
fn denials_name_the_gate_and_write_nothing() {
    let (_dir, store) = open();
    let pipeline = pipeline(GateSet::fail_fast());
    let denial = pipeline
        .evaluate(&policy(), transfer(50_000, "bob"))
        .unwrap_err();
    assert_eq!(denial.gate(), "limit");
    assert_eq!(denial.reason(), "50000 cents exceeds the limit of 10000");

    let denial = pipeline
        .evaluate(&policy(), transfer(5, "mallory"))
        .unwrap_err();
    assert_eq!(denial.gate(), "sanctions");

    // Fail-fast: only the first of two refusals.
    let denial = pipeline
        .evaluate(&policy(), transfer(50_000, "mallory"))
        .unwrap_err();
    assert_eq!(denial.refusals().len(), 1);
    assert_eq!(store.next_sequence(), 0, "denied proposals write nothing");
}

#[test]
fn collect_all_reports_every_refusal() {
    let pipeline = pipeline(GateSet::collect_all());
    let elsewhere = Coordinate::new("account:alice", "casino").unwrap();
    let proposal = Proposal::new(
        &elsewhere,
        TRANSFER,
        &serde_json::json!({ "cents": 50_000, "to": "mallory" }),
    )
    .unwrap();
    let denial = pipeline.evaluate(&policy(), proposal).unwrap_err();
    let gates: Vec<&str> = denial.refusals().iter().map(|r| r.gate.as_str()).collect();
    assert_eq!(gates, ["limit", "sanctions", "own-scope"]);
    assert_eq!(denial.refusals()[1].reason, "mallory is sanctioned");
    assert_eq!(denial.gate(), "limit");
}

#[test]
fn proposal_options_apply_on_commit() {
    let (_dir, store) = open();
    let pipeline = pipeline(GateSet::fail_fast());
    let first = pipeline
        .evaluate(
            &policy(),
            transfer(1, "bob").with_options(AppendOptions::new().expect_clock(0)),
        )
        .unwrap()
        .commit(&store)
        .unwrap();
    // A second commit expecting the same clock loses the race.
    let stale = pipeline
        .evaluate(
            &policy(),
            transfer(2, "bob").with_options(AppendOptions::new().expect_clock(0)),
        )
        .unwrap()
        .commit(&store);
    assert!(matches!(
        stale,
        Err(StoreError::ClockMismatch {
            expected: 0,
            actual: 1
        })
    ));
    let caused = pipeline
        .evaluate(
            &policy(),
            transfer(3, "bob")
                .with_options(AppendOptions::new().causation_id(first.receipt.event_id)),
        )
        .unwrap()
        .commit(&store)
        .unwrap();
    let stored = store.get(caused.receipt.event_id).unwrap().unwrap();
    assert_eq!(stored.header.causation_id, Some(first.receipt.event_id));
}

#[test]
fn bypass_commits_the_event_with_a_record_of_its_reason() {
    let (_dir, store) = open();
    let pipeline = pipeline(GateSet::fail_fast());
    let proposal = transfer(1_000_000, "mallory");
    assert!(pipeline.evaluate(&policy(), proposal.clone()).is_err());

    let committed = pipeline
        .bypass(&store, proposal, "court order 2026-117")
        .unwrap();
    let event = store.get(committed.receipt.event_id).unwrap().unwrap();
    assert_eq!(event.payload["cents"], 1_000_000);
    assert_eq!(
        event.header.clock, 1,
        "the record does not move the entity's clock"
    );

    let record_receipt = committed.bypass_record.unwrap();
    assert_eq!(record_receipt.sequence, committed.receipt.sequence + 1);
    let record = store.get(record_receipt.event_id).unwrap().unwrap();
    assert_eq!(record.kind(), BYPASS_KIND);
    assert_eq!(record.coordinate.entity(), BYPASS_ENTITY);
    assert_eq!(record.coordinate.scope(), "bank");
    assert_eq!(record.header.causation_id, Some(committed.receipt.event_id));
    let record: BypassRecord = serde_json::from_value(record.payload).unwrap();
    assert_eq!(
        record,
        BypassRecord {
            reason: "court order 2026-117".into(),
            entity: "account:alice".into(),
            scope: "bank".into(),
            kind: TRANSFER,
            gates_skipped: vec!["limit".into(), "sanctions".into(), "own-scope".into()],
        }
    );

    // Auditors find it by causation.
    let found: Vec<_> = store
        .query(&Region::all().with_causation(committed.receipt.event_id))
        .map(|event| event.unwrap().id())
        .collect();
    assert_eq!(found, [record_receipt.event_id]);
}

#[test]
fn bypass_without_a_reason_or_with_a_failing_append_writes_nothing() {
    let (_dir, store) = open();
    let pipeline = pipeline(GateSet::fail_fast());
    assert!(matches!(
        pipeline.bypass(&store, transfer(1, "bob"), "  "),
        Err(StoreError::InvalidInput { .. })
    ));
    let stale = transfer(1, "bob").with_options(AppendOptions::new().expect_clock(7));
    assert!(pipeline.bypass(&store, stale, "urgent").is_err());
    assert_eq!(store.next_sequence(), 0, "neither the event nor its record");
}

#[test]
fn typed_proposals_carry_kind_and_schema_version() {
    #[derive(serde::Serialize, serde::Deserialize, EventPayload)]
    #[batpak(category = 0x4, type_id = 2, version = 3)]
    struct Paid {
        cents: u64,
        to: String,
    }
    let (_dir, store) = open();
    let from = Coordinate::new("account:alice", "bank").unwrap();
    let proposal = Proposal::typed(
        &from,
        &Paid {
            cents: 5,
            to: "bob".into(),
        },
    )
    .unwrap()
    .with_options(AppendOptions::new().flags(0x8));
    assert_eq!(proposal.kind(), EventKind::custom(0x4, 2));
    let gates = GateSet::fail_fast().with(LimitGate);
    let committed = Pipeline::new(gates)
        .evaluate(&policy(), proposal)
        .unwrap()
        .commit(&store)
        .unwrap();
    let stored = store
        .get_as::<Paid>(committed.receipt.event_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.header.schema_version, 3);
    assert_eq!(stored.header.flags, 0x8);
    assert_eq!(stored.payload.to, "bob");
}
