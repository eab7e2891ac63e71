//! The SPDM shell: moves messages of the sans-IO SPDM core (`bmc_pairing_core::spdm`)
//! over a stream, with DSP0287 or the DMTF emulator's framing ([`transport`]).

pub mod transport;
