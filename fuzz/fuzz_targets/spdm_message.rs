//! Fuzzes the SPDM message codec: any input must decode without panicking, and any input
//! that decodes must re-encode to exactly the same bytes (`fuzz_message` panics otherwise).
//! The first byte selects the negotiated sizes the parser is given.
#![no_main]

use bmc_pairing_core::spdm::msgs::{ParseContext, fuzz_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let ctx = ParseContext {
        hash_len: [32, 48, 64, 0][usize::from(selector & 0x03)],
        signature_len: [64, 96, 132, 0][usize::from((selector >> 2) & 0x03)],
        summary_hash: selector & 0x10 != 0,
        signed_measurements: selector & 0x20 != 0,
    };
    fuzz_message(message, &ctx);
});
