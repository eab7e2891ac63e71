//! Fuzzes the pure deframers (DSP0287 and the emulator's platform header): no panics, and
//! every accepted frame re-encodes to exactly the bytes it was split from.
#![no_main]

use bmc_pairing_core::spdm::frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, bytes)) = data.split_first() else {
        return;
    };
    let cap = usize::from(cap) * 32;
    if let Ok(Some((f, used))) = frame::deframe(bytes, cap) {
        let mut again = Vec::new();
        frame::encode(&f, &mut again);
        assert_eq!(&again[..], &bytes[..used], "dsp0287 frame is not canonical");
        assert!(used <= cap + frame::HEADER_LEN);
    }
    for transport in [frame::EMU_TRANSPORT_NONE, frame::EMU_TRANSPORT_TCP] {
        if let Ok(Some((h, payload, used))) = frame::deframe_emu(bytes, transport, cap) {
            let again = frame::frame_emu(h.command, h.transport, payload);
            assert_eq!(&again[..], &bytes[..used], "emulator frame is not canonical");
        }
    }
});
