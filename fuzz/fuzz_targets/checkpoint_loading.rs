#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    batpak_fuzz::harness::checkpoint_loading(data);
});
