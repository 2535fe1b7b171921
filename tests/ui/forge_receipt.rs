// A Receipt is proof that gates passed: it cannot be built by hand.
use batpak::prelude::*;

fn main() {
    let coord = Coordinate::new("account:1", "bank").unwrap();
    let proposal = Proposal::new(&coord, EventKind::custom(0x1, 1), &42).unwrap();
    let _forged = Receipt {
        proposal,
        gates_passed: Vec::new(),
    };
}
