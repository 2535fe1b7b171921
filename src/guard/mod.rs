//! Gates: named policy checks that see the caller's context and a proposed
//! event, and sets of them evaluated fail-fast or collect-all.
//!
//! Gates decide; they never write. The [`Pipeline`](crate::pipeline::Pipeline)
//! turns a passed evaluation into a [`Receipt`](crate::pipeline::Receipt),
//! the only thing that commits a gated event.

mod proposal;

pub use proposal::Proposal;

use std::fmt;

/// A named policy check over a proposed event.
///
/// `Ctx` is whatever the caller knows that the event does not: the acting
/// user, limits, a clock, a sanctions list. A gate returns `Err(reason)` to
/// refuse; the [`GateSet`] adds the gate's name to make a [`Denial`].
pub trait Gate<Ctx: ?Sized>: Send + Sync {
    /// The gate's name, reported in denials. Keep it stable: audit trails quote it.
    fn name(&self) -> &str;

    /// Checks the proposal. `Err` carries the reason for the refusal.
    fn check(&self, context: &Ctx, proposal: &Proposal) -> Result<(), String>;
}

/// A gate built from a name and a closure (see [`gate_fn`]).
pub struct FnGate<F> {
    name: String,
    check: F,
}

/// Builds a [`Gate`] from a name and a closure.
///
/// ```
/// use batpak::prelude::*;
/// let positive = gate_fn("positive", |limit: &i64, proposal: &Proposal| {
///     match proposal.payload()["amount"].as_i64() {
///         Some(amount) if amount > 0 && amount <= *limit => Ok(()),
///         _ => Err("amount must be positive and within the limit".to_string()),
///     }
/// });
/// assert_eq!(positive.name(), "positive");
/// ```
pub fn gate_fn<Ctx: ?Sized, F>(name: impl Into<String>, check: F) -> FnGate<F>
where
    F: Fn(&Ctx, &Proposal) -> Result<(), String> + Send + Sync,
{
    FnGate {
        name: name.into(),
        check,
    }
}

impl<Ctx: ?Sized, F> Gate<Ctx> for FnGate<F>
where
    F: Fn(&Ctx, &Proposal) -> Result<(), String> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, context: &Ctx, proposal: &Proposal) -> Result<(), String> {
        (self.check)(context, proposal)
    }
}

/// One gate's refusal: which gate, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The gate's [`Gate::name`].
    pub gate: String,
    /// The reason the gate gave.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gate `{}` refused: {}", self.gate, self.reason)
    }
}

/// A proposal was refused. Names the first gate that refused and its reason;
/// a collect-all [`GateSet`] also reports every other refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    // Invariant: never empty.
    refusals: Vec<Refusal>,
}

impl Denial {
    /// A denial by one gate.
    pub fn new(gate: impl Into<String>, reason: impl Into<String>) -> Self {
        Denial {
            refusals: vec![Refusal {
                gate: gate.into(),
                reason: reason.into(),
            }],
        }
    }

    /// The name of the first gate that refused.
    pub fn gate(&self) -> &str {
        &self.refusals[0].gate
    }

    /// The first refusal's reason.
    pub fn reason(&self) -> &str {
        &self.refusals[0].reason
    }

    /// Every refusal, in gate order (one for a fail-fast set).
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied: {}", self.refusals[0])?;
        for refusal in &self.refusals[1..] {
            write!(f, "; {refusal}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

/// How a [`GateSet`] reports refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Stop at the first refusal; later gates are not run.
    FailFast,
    /// Run every gate and report every refusal.
    CollectAll,
}

/// Gates evaluated in the order they were added.
pub struct GateSet<Ctx: ?Sized> {
    gates: Vec<Box<dyn Gate<Ctx>>>,
    evaluation: Evaluation,
}

impl<Ctx: ?Sized> GateSet<Ctx> {
    /// An empty set that stops at the first refusal.
    pub fn fail_fast() -> Self {
        GateSet {
            gates: Vec::new(),
            evaluation: Evaluation::FailFast,
        }
    }

    /// An empty set that runs every gate and reports every refusal.
    pub fn collect_all() -> Self {
        GateSet {
            gates: Vec::new(),
            evaluation: Evaluation::CollectAll,
        }
    }

    /// Adds a gate (builder form).
    pub fn with(mut self, gate: impl Gate<Ctx> + 'static) -> Self {
        self.push(gate);
        self
    }

    /// Adds a gate.
    pub fn push(&mut self, gate: impl Gate<Ctx> + 'static) {
        self.gates.push(Box::new(gate));
    }

    /// How this set reports refusals.
    pub fn evaluation(&self) -> Evaluation {
        self.evaluation
    }

    /// The gates' names, in evaluation order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.gates.iter().map(|gate| gate.name())
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// True if the set has no gates (every proposal passes).
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// Runs the gates over `proposal`.
    pub fn evaluate(&self, context: &Ctx, proposal: &Proposal) -> Result<(), Denial> {
        let mut refusals = Vec::new();
        for gate in &self.gates {
            if let Err(reason) = gate.check(context, proposal) {
                refusals.push(Refusal {
                    gate: gate.name().to_string(),
                    reason,
                });
                if self.evaluation == Evaluation::FailFast {
                    break;
                }
            }
        }
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(Denial { refusals })
        }
    }
}

impl<Ctx: ?Sized> fmt::Debug for GateSet<Ctx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateSet")
            .field("evaluation", &self.evaluation)
            .field("gates", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::{Coordinate, EventKind};

    struct Limit;

    impl Gate<u64> for Limit {
        fn name(&self) -> &str {
            "limit"
        }
        fn check(&self, limit: &u64, proposal: &Proposal) -> Result<(), String> {
            let amount = proposal.payload()["amount"].as_u64().unwrap_or(u64::MAX);
            if amount <= *limit {
                Ok(())
            } else {
                Err(format!("amount {amount} exceeds limit {limit}"))
            }
        }
    }

    fn proposal(amount: u64, to: &str) -> Proposal {
        let coord = Coordinate::new("account:a", "bank").unwrap();
        Proposal::new(
            &coord,
            EventKind::custom(0x1, 1),
            &serde_json::json!({"amount": amount, "to": to}),
        )
        .unwrap()
    }

    fn sanctions() -> impl Gate<u64> {
        gate_fn("sanctions", |_: &u64, p: &Proposal| {
            if p.payload()["to"] == "mallory" {
                Err("recipient is sanctioned".to_string())
            } else {
                Ok(())
            }
        })
    }

    #[test]
    fn passing_proposal_passes_every_gate() {
        let set = GateSet::fail_fast().with(Limit).with(sanctions());
        assert_eq!(set.evaluate(&100, &proposal(50, "bob")), Ok(()));
        assert_eq!(set.names().collect::<Vec<_>>(), ["limit", "sanctions"]);
    }

    #[test]
    fn fail_fast_stops_at_the_first_refusal() {
        let later_runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&later_runs);
        let set = GateSet::fail_fast()
            .with(Limit)
            .with(sanctions())
            .with(gate_fn("counter", move |_: &u64, _: &Proposal| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }));
        let denial = set.evaluate(&100, &proposal(500, "mallory")).unwrap_err();
        assert_eq!(denial.gate(), "limit");
        assert_eq!(denial.reason(), "amount 500 exceeds limit 100");
        assert_eq!(denial.refusals().len(), 1);
        assert_eq!(later_runs.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn collect_all_reports_every_refusal_in_order() {
        let set = GateSet::collect_all().with(Limit).with(sanctions());
        let denial = set.evaluate(&100, &proposal(500, "mallory")).unwrap_err();
        assert_eq!(
            denial.refusals(),
            [
                Refusal {
                    gate: "limit".into(),
                    reason: "amount 500 exceeds limit 100".into()
                },
                Refusal {
                    gate: "sanctions".into(),
                    reason: "recipient is sanctioned".into()
                },
            ]
        );
        assert_eq!(
            denial.to_string(),
            "denied: gate `limit` refused: amount 500 exceeds limit 100; \
             gate `sanctions` refused: recipient is sanctioned"
        );
        // Only the second gate refuses: the first refusal is the sanctions one.
        let denial = set.evaluate(&1000, &proposal(500, "mallory")).unwrap_err();
        assert_eq!(denial.gate(), "sanctions");
        assert_eq!(denial.refusals().len(), 1);
    }

    #[test]
    fn empty_set_passes_everything() {
        let set: GateSet<u64> = GateSet::collect_all();
        assert!(set.is_empty());
        assert_eq!(set.evaluate(&0, &proposal(1, "x")), Ok(()));
    }
}
