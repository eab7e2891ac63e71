//! Fuzzes the pairing-channel frame decoder: no panics, never a frame longer than the cap,
//! and every accepted frame re-encodes to exactly the bytes it was decoded from.
#![no_main]

use bmc_pairing_core::link::frame::{Frame, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Decode a stream of frames, as the connection does.
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        assert!(used <= MAX_FRAME_LEN);
        let again = frame.to_bytes().expect("a decoded frame re-encodes");
        assert_eq!(&again[..], &rest[..used], "frame is not canonical");
        rest = &rest[used..];
    }
});
