//! Pairing: what this BMC trusts and how its sessions stand.
//!
//! - [`model`]: the data (peers, pins, states, outcomes) as persisted and published;
//! - [`request`]: reading `ProvisionPeer(bmcId)` and the refusals it can get;
//! - [`machine`]: every pairing rule, as a state machine that returns [`Action`]s;
//! - [`group`]: the group authority's rules (what it signs, the signed group list).

pub mod group;
pub mod machine;
pub mod model;
pub mod request;

pub use machine::{
    Action, AttestPolicy, AttestPurpose, AttestationReport, Captured, IdentityCheck, MAX_FAREWELLS,
    Outgoing, Pairing, Peer, RECHECK_RETRY, RecheckCause, Settings, TimeView,
    UNTRUSTED_CLOCK_WINDOW,
};
pub use model::{
    AttestationOutcome, ConnState, PeerId, PeerRecord, Persisted, STATE_VERSION, TrustMode,
    UnknownOutcome, is_valid_name,
};
pub use request::{Candidate, MAX_ID_LEN, NameBook, Refusal, Request, parse_request};
