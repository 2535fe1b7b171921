//! A bank transfer guarded by a limit gate and a sanctions gate: receipts,
//! denials (fail-fast and collect-all), and a recorded bypass.
//!
//! `cargo run --example policy_gates`

use batpak::pipeline::BypassRecord;
use batpak::prelude::*;
use serde::{Deserialize, Serialize};

/// Money leaving an account.
#[derive(Debug, Serialize, Deserialize, EventPayload)]
#[batpak(category = 0x2, type_id = 1)]
struct TransferSent {
    to: String,
    cents: u64,
}

/// What the gates know that the event does not.
struct Policy {
    limit_cents: u64,
    sanctioned: Vec<String>,
}

/// Refuses transfers over the per-transfer limit.
struct LimitGate;

impl Gate<Policy> for LimitGate {
    fn name(&self) -> &str {
        "transfer-limit"
    }

    fn check(&self, policy: &Policy, proposal: &Proposal) -> Result<(), String> {
        let cents = proposal.payload()["cents"].as_u64().unwrap_or(u64::MAX);
        if cents <= policy.limit_cents {
            Ok(())
        } else {
            Err(format!(
                "{cents} cents is over the {} cent limit",
                policy.limit_cents
            ))
        }
    }
}

/// Refuses transfers to sanctioned parties.
struct SanctionsGate;

impl Gate<Policy> for SanctionsGate {
    fn name(&self) -> &str {
        "sanctions"
    }

    fn check(&self, policy: &Policy, proposal: &Proposal) -> Result<(), String> {
        let to = proposal.payload()["to"].as_str().unwrap_or_default();
        if policy.sanctioned.iter().any(|name| name == to) {
            Err(format!("{to} is on the sanctions list"))
        } else {
            Ok(())
        }
    }
}

fn transfer(from: &Coordinate, to: &str, cents: u64) -> Result<Proposal, StoreError> {
    Proposal::typed(
        from,
        &TransferSent {
            to: to.into(),
            cents,
        },
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let policy = Policy {
        limit_cents: 100_000,
        sanctioned: vec!["mallory".into()],
    };
    let alice = Coordinate::new("account:alice", "bank")?;
    let pipeline = Pipeline::new(GateSet::fail_fast().with(LimitGate).with(SanctionsGate));

    // 1. Within policy: the receipt commits.
    let receipt = pipeline.evaluate(&policy, transfer(&alice, "bob", 25_000)?)?;
    println!("gates passed: {:?}", receipt.gates_passed());
    let committed = receipt.commit(&store)?;
    println!(
        "committed {} at sequence {}, clock {}, hash {}",
        committed.receipt.event_id,
        committed.receipt.sequence,
        committed.receipt.clock,
        committed
            .receipt
            .hash
            .map(|hash| hash.to_hex())
            .unwrap_or_else(|| "-".into())
    );

    // 2. Over the limit: denied, nothing written.
    match pipeline.evaluate(&policy, transfer(&alice, "bob", 500_000)?) {
        Ok(_) => println!("unexpectedly allowed"),
        Err(denial) => println!("{denial}"),
    }

    // 3. Collect-all reports every reason at once.
    let strict = Pipeline::new(GateSet::collect_all().with(LimitGate).with(SanctionsGate));
    if let Err(denial) = strict.evaluate(&policy, transfer(&alice, "mallory", 900_000)?) {
        for refusal in denial.refusals() {
            println!("collect-all: {refusal}");
        }
    }

    // 4. A bypass commits anyway and records who, what and why, atomically.
    let bypassed = pipeline.bypass(
        &store,
        transfer(&alice, "bob", 2_000_000)?,
        "treasury-approved house purchase, ticket FIN-42",
    )?;
    if let Some(record) = bypassed.bypass_record {
        let stored = store.get(record.event_id)?.ok_or("bypass record missing")?;
        let record: BypassRecord = serde_json::from_value(stored.payload)?;
        println!(
            "bypass of {} recorded: {:?} (skipped {:?})",
            bypassed.receipt.event_id, record.reason, record.gates_skipped
        );
    }

    let sent: Vec<u64> = store
        .stream_as::<TransferSent>("account:alice")
        .map(|event| event.map(|event| event.payload.cents))
        .collect::<Result<_, _>>()?;
    println!("alice's transfers in the log: {sent:?}");
    store.close()?;
    Ok(())
}
