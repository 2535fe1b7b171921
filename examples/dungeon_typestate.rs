//! A dungeon crawl as a typestate machine: only legal moves compile, each
//! move is an event, and the hero's state is rebuilt from the log.
//!
//! `cargo run --example dungeon_typestate`

use batpak::prelude::*;

batpak::typestate! {
    /// A hero's progress through the dungeon.
    pub machine Hero {
        kind: EventKind::custom(0x6, 1),
        states: enum HeroState { Entrance, Corridor, Lair, Treasury, Fallen },
        initial: Entrance,
        transitions: {
            descend: Entrance => Corridor,
            sneak_past: Corridor => Treasury,
            fight(String): Corridor => Lair,
            win: Lair => Treasury,
            fall: Lair => Fallen,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path()))?;
    let aria = Coordinate::new("hero:aria", "dungeon:1")?;

    let hero: Hero<Entrance> = Hero::start(&store, &aria)?;
    let hero: Hero<Corridor> = hero.descend(&store)?;
    let hero: Hero<Lair> = hero.fight(&store, &"a dragon".to_string())?;
    // `hero.sneak_past(&store)` would not compile here: sneaking is only
    // possible from the corridor (see tests/ui/illegal_transition.rs).
    println!("aria is in the lair at clock {}", hero.clock());

    // The program stops; later the hero's state comes back from the log.
    drop(hero);
    match HeroState::load(&store, &aria)? {
        HeroState::Lair(hero) => {
            let hero: Hero<Treasury> = hero.win(&store)?;
            println!(
                "aria won and reached the treasury at clock {}",
                hero.clock()
            );
        }
        other => println!("unexpected state {}", other.name()),
    }

    println!("the log of aria's moves:");
    for event in store.stream("hero:aria") {
        let record: batpak::typestate::TransitionRecord = serde_json::from_value(event?.payload)?;
        println!(
            "  {}: {} -> {} {}",
            record.transition, record.from, record.to, record.data
        );
    }
    println!("rebuilt state: {}", HeroState::load(&store, &aria)?.name());
    store.close()?;
    Ok(())
}
