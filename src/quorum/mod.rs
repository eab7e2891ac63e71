//! The trust quorum's shells (seed 003): the rules are the core's
//! ([`bmc_pairing_core::quorum`]); here are the actor that runs them ([`actor`]), the
//! TPM-sealed share files ([`vault`]) and the derived keys for local consumers ([`keys`]).

pub mod actor;
pub mod keys;
pub mod vault;
