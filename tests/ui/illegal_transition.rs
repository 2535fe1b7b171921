// A locked door has no `open` transition: calling it does not compile.
use batpak::prelude::*;

batpak::typestate! {
    pub machine Door {
        kind: EventKind::custom(0x3, 1),
        states: enum DoorState { Closed, Open, Locked },
        initial: Closed,
        transitions: {
            open: Closed => Open,
            close: Open => Closed,
            lock: Closed => Locked,
            unlock: Locked => Closed,
        }
    }
}

fn sneak_in(store: &Store, door: Door<Locked>) -> Result<Door<Open>, TypestateError> {
    door.open(store)
}

fn main() {}
