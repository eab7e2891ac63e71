//! The TPM conversation itself: templates, TPM2 commands, object flushing, error mapping.
//!
//! Owns the `tss_esapi::Context`. A [`Device`] lives on the owner thread of
//! [`super::TpmKeyStore`] and nowhere else; no other code in the project holds a Context.
//! It knows nothing of files or roles' storage; it turns wrapped areas into signatures.
//!
//! Every operation re-creates the storage primary, loads what it needs, and flushes every
//! object it loaded before returning, on error paths too. At most two transient objects
//! (primary + key) are loaded at once, and none between operations, so the backend works on
//! a TPM with no resource manager (raw swtpm, `/dev/tpm0`) as well as behind `/dev/tpmrm0`.
//! The one exception is a link that breaks mid-operation, or a process killed mid-operation:
//! the flush cannot be sent then. `/dev/tpmrm0` flushes a closed connection's objects
//! itself; a raw TPM keeps them until its next reset, and after two such leaks every
//! operation fails with TPM_RC_OBJECT_MEMORY. So when an operation runs out of object slots
//! while this process holds the simulator lock (every cooperating user is then between
//! operations, holding no object), the transient objects left in the TPM are leaks: they are
//! flushed and the operation is tried once more ([`Device::set_exclusive`]).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::TryFrom;

use tss_esapi::Context;
use tss_esapi::TctiNameConf;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK, TPM2_TRANSIENT_FIRST};
use tss_esapi::handles::{KeyHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, EccParameter, EccPoint, EccScheme, HashScheme, HashcheckTicket,
    KeyedHashScheme, PcrSelectSize, PcrSelectionListBuilder, PcrSlot, Private, Public,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData, Signature,
    SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use super::{PCR_COUNT, TpmError};
use bmc_pairing_core::keys::{Error, KeyRole, P256_SIGNATURE_LEN, SHA256_LEN};

/// Size of one P-256 coordinate or signature half.
const P256_FIELD_LEN: usize = 32;

/// How many transient handles one TPM2_GetCapability asks for (a TPM has a handful of slots).
const MAX_TRANSIENT_LISTED: u32 = 64;

/// How often a PCR read is restarted because a PCR changed between two TPM2_PCR_Read calls.
const PCR_READ_ATTEMPTS: usize = 3;

/// A failure inside one attempt of an operation.
enum Fault {
    /// The link to the TPM broke (socket closed, device error, torn response). The context is
    /// dropped and the operation tried once more on a fresh connection.
    Link(TpmError),
    /// The TPM has no free object slot (TPM_RC_OBJECT_MEMORY).
    OutOfSlots(TpmError),
    /// Anything else: reported as is.
    Fatal(Error),
}

type Attempt<T> = Result<T, Fault>;

/// `(index, value)` pairs of SHA-256 PCRs, sorted by index.
type PcrValues = Vec<(u8, [u8; 32])>;

/// The owner thread's handle on the TPM: a TCTI configuration and, while the link is good,
/// an open ESAPI context.
pub(super) struct Device {
    tcti: TctiNameConf,
    tcti_text: String,
    context: Option<Context>,
    exclusive: bool,
}

/// Parses a TCTI string (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...).
///
/// # Errors
/// [`Error::Unavailable`] when tss-esapi does not understand it.
pub(super) fn parse_tcti(tcti: &str) -> Result<TctiNameConf, Error> {
    let bad = |e| TpmError::tss(format!("bad tcti {tcti:?}"), e).unavailable();
    // `device` and `device:PATH` without tss-esapi's regex-based parser (same meaning).
    if tcti == "device" {
        return Ok(TctiNameConf::Device(Default::default()));
    }
    if let Some(path) = tcti.strip_prefix("device:") {
        return path
            .parse::<tss_esapi::tcti_ldr::DeviceConfig>()
            .map(TctiNameConf::Device)
            .map_err(bad);
    }
    network_tcti(tcti)
}

/// `swtpm:...`, `mssim:...` and `tabrmd:...`, by tss-esapi's parser.
#[cfg(feature = "network-tcti")]
fn network_tcti(tcti: &str) -> Result<TctiNameConf, Error> {
    tcti.parse()
        .map_err(|e| TpmError::tss(format!("bad tcti {tcti:?}"), e).unavailable())
}

/// Built without the `network-tcti` feature: only the device TCTI.
#[cfg(not(feature = "network-tcti"))]
fn network_tcti(tcti: &str) -> Result<TctiNameConf, Error> {
    let unsupported = tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::UnsupportedParam);
    Err(TpmError::tss(
        format!("bad tcti {tcti:?}: this build has the device TCTI only (feature network-tcti)"),
        unsupported,
    )
    .unavailable())
}

impl Device {
    /// A device for `tcti` (connected on first use). `tcti_text` is for messages.
    pub(super) fn new(tcti: TctiNameConf, tcti_text: String) -> Device {
        Device {
            tcti,
            tcti_text,
            context: None,
            exclusive: false,
        }
    }

    /// Tells the device whether the current operation runs with every cooperating user of
    /// the TPM between operations (this process holds the simulator lock). Only then are
    /// transient objects found in the TPM known to be leaks that may be flushed.
    pub(super) fn set_exclusive(&mut self, exclusive: bool) {
        self.exclusive = exclusive;
    }

    /// Forgets the connection; the next operation reconnects.
    pub(super) fn reset(&mut self) {
        self.context = None;
    }

    /// Proves the TPM is usable for this backend: it answers, and it can derive our storage
    /// primary (owner hierarchy enabled, empty owner auth, ECC P-256 supported).
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub(super) fn probe(&mut self) -> Result<(), Error> {
        self.run(|ctx| {
            let primary = create_primary(ctx)?;
            flush(ctx, primary)
        })
    }

    /// TPM2_Create of a new P-256 signing key under the storage primary; returns its public
    /// and wrapped private areas.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub(super) fn create_key(&mut self) -> Result<(Public, Private), Error> {
        self.run(|ctx| {
            // Built before anything is loaded, so its failure cannot leave the primary behind.
            let template = key_template().map_err(|e| fatal("key template", e))?;
            let primary = create_primary(ctx)?;
            let created = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.create(primary, template, None, None, None, None)
            });
            let flushed = flush(ctx, primary);
            let created = created.map_err(|e| classify("TPM2_Create", e))?;
            flushed?;
            Ok((created.out_public, created.out_private))
        })
    }

    /// Loads the key and flushes it again: proves the blob is still bound to this TPM.
    ///
    /// # Errors
    /// [`Error::KeyUnusable`] when the TPM rejects the blob, [`Error::Unavailable`] otherwise.
    pub(super) fn check_loads(
        &mut self,
        role: KeyRole,
        public: &Public,
        private: &Private,
    ) -> Result<(), Error> {
        self.run(|ctx| {
            let key = load(ctx, role, public, private)?;
            flush(ctx, key)
        })
    }

    /// Signs a SHA-256 digest with the wrapped key; returns raw `r || s`.
    ///
    /// # Errors
    /// [`Error::KeyUnusable`] when the TPM rejects the blob, [`Error::Sign`] when the TPM
    /// returns something that is not a P-256 ECDSA signature, [`Error::Unavailable`] otherwise.
    pub(super) fn sign(
        &mut self,
        role: KeyRole,
        public: &Public,
        private: &Private,
        digest: &[u8; SHA256_LEN],
    ) -> Result<[u8; P256_SIGNATURE_LEN], Error> {
        self.run(|ctx| {
            let key = load(ctx, role, public, private)?;
            let signed = sign_loaded(ctx, key, digest);
            let flushed = flush(ctx, key);
            let signature = signed?;
            flushed?;
            raw_signature(role, &signature).map_err(Fault::Fatal)
        })
    }

    /// TPM2_Create of a sealed-data object holding `data` under the storage primary (a
    /// trust-quorum share); returns its public and wrapped private areas. The data exists
    /// outside the TPM only inside the private area, encrypted under the storage primary.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub(super) fn seal(&mut self, data: &[u8]) -> Result<(Public, Private), Error> {
        self.run(|ctx| {
            let template = sealed_template().map_err(|e| fatal("sealed-data template", e))?;
            let sensitive =
                SensitiveData::try_from(data.to_vec()).map_err(|e| fatal("sealed data", e))?;
            let primary = create_primary(ctx)?;
            let created = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.create(primary, template, None, Some(sensitive), None, None)
            });
            let flushed = flush(ctx, primary);
            let created = created.map_err(|e| classify("TPM2_Create (sealed data)", e))?;
            flushed?;
            Ok((created.out_public, created.out_private))
        })
    }

    /// TPM2_Load + TPM2_Unseal of a sealed-data object made by [`Device::seal`].
    ///
    /// # Errors
    /// [`Error::Unavailable`], also when this TPM refuses the object (another TPM's, or the
    /// owner seed changed).
    pub(super) fn unseal(
        &mut self,
        public: &Public,
        private: &Private,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        self.run(|ctx| {
            let primary = create_primary(ctx)?;
            let loaded = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.load(primary, private.clone(), public.clone())
            });
            let flushed = flush(ctx, primary);
            let object = match (loaded, flushed) {
                (Ok(object), Ok(())) => object,
                (Ok(object), Err(fault)) => {
                    let _ = ctx.flush_context(ObjectHandle::from(object));
                    return Err(fault);
                }
                (Err(e), _) => return Err(classify("TPM2_Load (sealed data)", e)),
            };
            let unsealed = ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.unseal(ObjectHandle::from(object))
            });
            let flushed = flush(ctx, object);
            let data = unsealed.map_err(|e| classify("TPM2_Unseal", e))?;
            flushed?;
            Ok(zeroize::Zeroizing::new(data.value().to_vec()))
        })
    }

    /// Reads SHA-256 PCRs `indices` (each below [`PCR_COUNT`], sorted, no duplicates) as one
    /// consistent snapshot: all values come from reads with the same PCR update counter.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub(super) fn read_pcrs(&mut self, indices: &BTreeSet<u8>) -> Result<PcrValues, Error> {
        self.run(|ctx| {
            for _ in 0..PCR_READ_ATTEMPTS {
                if let Some(values) = read_pcr_snapshot(ctx, indices)? {
                    return Ok(values);
                }
            }
            Err(Fault::Fatal(
                TpmError::Unexpected("pcrs kept changing while they were read".into())
                    .unavailable(),
            ))
        })
    }

    /// Runs `op` on a connected context; after a broken link, once more on a fresh one; after
    /// running out of object slots while exclusive, once more after flushing leaked objects.
    fn run<T>(&mut self, mut op: impl FnMut(&mut Context) -> Attempt<T>) -> Result<T, Error> {
        let mut last = TpmError::Unexpected("no attempt was made".into());
        let mut reclaimed = false;
        let exclusive = self.exclusive;
        for _ in 0..3 {
            let ctx = self.connect()?;
            match op(ctx) {
                Ok(value) => return Ok(value),
                Err(Fault::Fatal(e)) => return Err(e),
                Err(Fault::OutOfSlots(why)) => {
                    if reclaimed || !exclusive {
                        return Err(why.unavailable());
                    }
                    reclaimed = true;
                    let flushed = flush_stale_transients(ctx).map_err(|e| e.unavailable())?;
                    tracing::warn!(
                        flushed,
                        "the tpm was out of object slots: flushed objects leaked by a process that died mid-operation"
                    );
                    last = why;
                }
                Err(Fault::Link(why)) => {
                    self.context = None;
                    last = why;
                }
            }
        }
        Err(TpmError::LinkLost {
            tcti: self.tcti_text.clone(),
            last: Box::new(last),
        }
        .unavailable())
    }

    fn connect(&mut self) -> Result<&mut Context, Error> {
        match &mut self.context {
            Some(ctx) => Ok(ctx),
            slot @ None => {
                let ctx = Context::new(self.tcti.clone()).map_err(|e| {
                    TpmError::tss(format!("cannot reach the tpm at {}", self.tcti_text), e)
                        .unavailable()
                })?;
                Ok(slot.insert(ctx))
            }
        }
    }
}

/// The storage primary's template: the TCG ECC NIST P-256 SRK template (table in the
/// `tpm` module docs).
///
/// TPM2_CreatePrimary is deterministic: the same template under the same owner seed yields
/// the same key, which is why the primary is re-derived for every operation instead of
/// being stored.
pub(super) fn primary_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let zero = EccParameter::try_from(vec![0u8; P256_FIELD_LEN])?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::new(zero.clone(), zero))
        .build()
}

/// Each role's key: ECC NIST P-256, ECDSA-SHA256, signing only, fixedTPM (table in the
/// `tpm` module docs).
pub(super) fn key_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .with_restricted(false)
        .with_decrypt(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// A sealed-data object (trust-quorum share): KEYEDHASH with the NULL scheme, SHA-256,
/// fixedTPM, fixedParent, userWithAuth, noDA; no sign, no decrypt; the data comes from us
/// (no sensitiveDataOrigin). fixedTPM: the TPM never duplicates it to another TPM.
pub(super) fn sealed_template() -> tss_esapi::Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// The uncompressed SEC1 point `04 || X || Y` of a P-256 signing key's public area.
///
/// # Errors
/// A reason when the area is not an ECC NIST P-256 signing key.
pub(super) fn p256_point(public: &Public) -> Result<Vec<u8>, &'static str> {
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err("not an ECC key");
    };
    if parameters.ecc_curve() != EccCurve::NistP256 {
        return Err("not a NIST P-256 key");
    }
    if !object_attributes.sign_encrypt() || object_attributes.decrypt() {
        return Err("not a signing-only key");
    }
    let mut point = Vec::with_capacity(1 + 2 * P256_FIELD_LEN);
    point.push(0x04);
    point.extend_from_slice(&left_pad(unique.x().value()).ok_or("x coordinate too long")?);
    point.extend_from_slice(&left_pad(unique.y().value()).ok_or("y coordinate too long")?);
    Ok(point)
}

/// A big-endian integer of at most 32 bytes, left-padded with zeros to exactly 32.
fn left_pad(value: &[u8]) -> Option<[u8; P256_FIELD_LEN]> {
    let mut out = [0u8; P256_FIELD_LEN];
    let start = P256_FIELD_LEN.checked_sub(value.len())?;
    out.get_mut(start..)?.copy_from_slice(value);
    Some(out)
}

fn create_primary(ctx: &mut Context) -> Attempt<KeyHandle> {
    let template = primary_template().map_err(|e| fatal("primary template", e))?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map(|created| created.key_handle)
    .map_err(|e| classify("TPM2_CreatePrimary (storage primary)", e))
}

/// Loads a wrapped key; the primary is flushed before returning, whatever happened.
fn load(
    ctx: &mut Context,
    role: KeyRole,
    public: &Public,
    private: &Private,
) -> Attempt<KeyHandle> {
    let primary = create_primary(ctx)?;
    let loaded = ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.load(primary, private.clone(), public.clone())
    });
    let flushed = flush(ctx, primary);
    match (loaded, flushed) {
        (Ok(key), Ok(())) => Ok(key),
        (Ok(key), Err(fault)) => {
            // Keep the slot count at zero between operations even when one flush failed.
            let _ = ctx.flush_context(ObjectHandle::from(key));
            Err(fault)
        }
        (Err(e), _) => Err(load_fault(role, e)),
    }
}

fn sign_loaded(ctx: &mut Context, key: KeyHandle, digest: &[u8; SHA256_LEN]) -> Attempt<Signature> {
    let digest = Digest::try_from(digest.as_slice()).map_err(|e| fatal("digest", e))?;
    // An unrestricted key needs no proof that the TPM hashed the message itself: a NULL
    // ticket (TPM_ST_HASHCHECK, TPM_RH_NULL, empty digest) is accepted.
    let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(|e| fatal("null hashcheck ticket", e))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.sign(key, digest, scheme, validation)
    })
    .map_err(|e| classify("TPM2_Sign", e))
}

/// Flushes every transient object in the TPM; returns how many. Only called while every
/// cooperating user is between operations, when any transient object is a leak.
fn flush_stale_transients(ctx: &mut Context) -> Result<usize, TpmError> {
    let (data, _more) = ctx
        .get_capability(
            CapabilityType::Handles,
            TPM2_TRANSIENT_FIRST,
            MAX_TRANSIENT_LISTED,
        )
        .map_err(|e| TpmError::tss("TPM2_GetCapability (transient handles)", e))?;
    let CapabilityData::Handles(handles) = data else {
        return Err(TpmError::Unexpected(
            "TPM2_GetCapability returned no handle list".into(),
        ));
    };
    let mut flushed = 0;
    for handle in handles.into_inner() {
        if !matches!(handle, TpmHandle::Transient(_)) {
            continue;
        }
        let object = ctx
            .tr_from_tpm_public(handle)
            .map_err(|e| TpmError::tss("Esys_TR_FromTPMPublic (leaked object)", e))?;
        ctx.flush_context(object)
            .map_err(|e| TpmError::tss("TPM2_FlushContext (leaked object)", e))?;
        flushed += 1;
    }
    Ok(flushed)
}

fn flush(ctx: &mut Context, handle: KeyHandle) -> Attempt<()> {
    ctx.flush_context(ObjectHandle::from(handle))
        .map_err(|e| classify("TPM2_FlushContext", e))
}

fn raw_signature(role: KeyRole, signature: &Signature) -> Result<[u8; P256_SIGNATURE_LEN], Error> {
    let Signature::EcDsa(ecc) = signature else {
        return Err(Error::Sign(role));
    };
    let r = left_pad(ecc.signature_r().value()).ok_or(Error::Sign(role))?;
    let s = left_pad(ecc.signature_s().value()).ok_or(Error::Sign(role))?;
    let mut out = [0u8; P256_SIGNATURE_LEN];
    let (left, right) = out.split_at_mut(P256_FIELD_LEN);
    left.copy_from_slice(&r);
    right.copy_from_slice(&s);
    Ok(out)
}

/// One pass over `indices`. `Ok(None)` when the PCR update counter moved between two
/// TPM2_PCR_Read calls (the TPM returns at most 8 digests per call), so the values would
/// not be one snapshot.
fn read_pcr_snapshot(ctx: &mut Context, indices: &BTreeSet<u8>) -> Attempt<Option<PcrValues>> {
    let mut remaining = indices.clone();
    let mut values = BTreeMap::new();
    let mut counter = None;
    while !remaining.is_empty() {
        let slots = remaining
            .iter()
            .map(|&i| PcrSlot::try_from(1u32 << i))
            .collect::<tss_esapi::Result<Vec<_>>>()
            .map_err(|e| fatal("pcr selection", e))?;
        let selection = PcrSelectionListBuilder::new()
            .with_size_of_select(PcrSelectSize::ThreeOctets)
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(|e| fatal("pcr selection", e))?;
        let (update_counter, read, digests) = ctx
            .execute_without_session(|c| c.pcr_read(selection))
            .map_err(|e| classify("TPM2_PCR_Read", e))?;
        if counter.is_some_and(|c| c != update_counter) {
            return Ok(None);
        }
        counter = Some(update_counter);

        let mut digests = digests.value().iter();
        let mut progressed = false;
        for selection in read.get_selections() {
            for slot in selection.selected() {
                let digest = digests.next().ok_or_else(|| {
                    Fault::Fatal(
                        TpmError::Unexpected("TPM2_PCR_Read returned too few digests".into())
                            .unavailable(),
                    )
                })?;
                if selection.hashing_algorithm() != HashingAlgorithm::Sha256 {
                    continue;
                }
                let index = u8::try_from(u32::from(slot).trailing_zeros())
                    .ok()
                    .filter(|i| *i < PCR_COUNT && remaining.contains(i))
                    .ok_or_else(|| {
                        Fault::Fatal(
                            TpmError::Unexpected(
                                "TPM2_PCR_Read returned a pcr that was not asked for".into(),
                            )
                            .unavailable(),
                        )
                    })?;
                let value = <[u8; 32]>::try_from(digest.value()).map_err(|_| {
                    Fault::Fatal(
                        TpmError::Unexpected(format!("pcr {index} is not a 32-byte sha256 value"))
                            .unavailable(),
                    )
                })?;
                remaining.remove(&index);
                values.insert(index, value);
                progressed = true;
            }
        }
        if !progressed {
            return Err(Fault::Fatal(
                TpmError::Unexpected(
                    "the tpm returned no sha256 pcr values (is the sha256 bank allocated?)".into(),
                )
                .unavailable(),
            ));
        }
    }
    Ok(Some(values.into_iter().collect()))
}

// Layers of a TSS2_RC (bits 16..24), from tss2_common.h.
const LAYER_TPM: u32 = 0;
const LAYER_ESAPI: u32 = 7;
const LAYER_SYS: u32 = 8;
const LAYER_MU: u32 = 9;
const LAYER_TCTI: u32 = 10;
const LAYER_RESMGR: u32 = 11;
const LAYER_RESMGR_TPM: u32 = 12;

// TSS2_BASE_RC_* values that mean "the conversation broke", not "the TPM said no".
const BASE_BAD_SEQUENCE: u32 = 7;
const BASE_NO_CONNECTION: u32 = 8;
const BASE_TRY_AGAIN: u32 = 9;
const BASE_IO_ERROR: u32 = 10;
const BASE_MALFORMED_RESPONSE: u32 = 17;
const BASE_INSUFFICIENT_RESPONSE: u32 = 19;

fn raw_rc(e: tss_esapi::Error) -> Option<u32> {
    match e {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => Some(rc.0),
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => Some(rc.0),
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::Success) => Some(0),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

fn layer(rc: u32) -> u32 {
    (rc >> 16) & 0xff
}

fn is_link_failure(e: tss_esapi::Error) -> bool {
    let Some(rc) = raw_rc(e) else {
        return false;
    };
    let base = rc & 0xffff;
    match layer(rc) {
        LAYER_TCTI => true,
        LAYER_ESAPI | LAYER_SYS => matches!(
            base,
            BASE_BAD_SEQUENCE
                | BASE_NO_CONNECTION
                | BASE_TRY_AGAIN
                | BASE_IO_ERROR
                | BASE_MALFORMED_RESPONSE
                | BASE_INSUFFICIENT_RESPONSE
        ),
        _ => false,
    }
}

/// TPM_RC_OBJECT_MEMORY: no free transient object slot.
fn is_out_of_slots(e: tss_esapi::Error) -> bool {
    matches!(e, tss_esapi::Error::Tss2Error(code) if code.kind() == Some(Tss2ResponseCodeKind::ObjectMemory))
}

/// True when the TPM itself refused the key's areas as malformed or not bound to the parent
/// (TPM_RC_INTEGRITY after a TPM2_Clear, TPM_RC_SIZE/VALUE/... for damaged bytes). Only these
/// make a key "unusable"; warnings, handle problems and transport errors do not, because
/// declaring a key lost can make the daemon replace it.
fn is_rejected_object(e: tss_esapi::Error) -> bool {
    let from_tpm = raw_rc(e).is_some_and(|rc| layer(rc) == LAYER_TPM);
    let tss_esapi::Error::Tss2Error(code) = e else {
        return false;
    };
    from_tpm
        && matches!(
            code.kind(),
            Some(
                Tss2ResponseCodeKind::Integrity
                    | Tss2ResponseCodeKind::Sensitive
                    | Tss2ResponseCodeKind::Binding
                    | Tss2ResponseCodeKind::Size
                    | Tss2ResponseCodeKind::Insufficient
                    | Tss2ResponseCodeKind::Value
                    | Tss2ResponseCodeKind::Key
                    | Tss2ResponseCodeKind::KeySize
                    | Tss2ResponseCodeKind::Attributes
                    | Tss2ResponseCodeKind::Type
                    | Tss2ResponseCodeKind::Scheme
                    | Tss2ResponseCodeKind::Curve
                    | Tss2ResponseCodeKind::EccPoint
                    | Tss2ResponseCodeKind::Hash
                    | Tss2ResponseCodeKind::Symmetric
                    | Tss2ResponseCodeKind::Asymmetric
                    | Tss2ResponseCodeKind::Kdf
                    | Tss2ResponseCodeKind::Mode
                    | Tss2ResponseCodeKind::Selector
                    | Tss2ResponseCodeKind::Tag
                    | Tss2ResponseCodeKind::ReservedBits
            )
        )
}

fn classify(what: &str, e: tss_esapi::Error) -> Fault {
    if is_link_failure(e) {
        Fault::Link(TpmError::tss(what, e))
    } else if is_out_of_slots(e) {
        Fault::OutOfSlots(TpmError::tss(what, e))
    } else {
        fatal(what, e)
    }
}

fn load_fault(role: KeyRole, e: tss_esapi::Error) -> Fault {
    if is_rejected_object(e) {
        Fault::Fatal(
            TpmError::tss(
                "the TPM refuses to load its blob (TPM cleared, or blob damaged)",
                e,
            )
            .unusable(role),
        )
    } else {
        classify("TPM2_Load", e)
    }
}

fn fatal(what: &str, e: tss_esapi::Error) -> Fault {
    Fault::Fatal(TpmError::tss(what, e).unavailable())
}

/// A one-line description with the raw response code, which tss-esapi's own text omits
/// (and which is all there is for TCTI and ESAPI layer codes).
pub(super) fn describe(e: tss_esapi::Error) -> String {
    match raw_rc(e) {
        None => e.to_string(),
        Some(rc) => {
            let layer_name = match layer(rc) {
                LAYER_TPM => return format!("{e} (TPM_RC {rc:#x})"),
                LAYER_ESAPI => "esapi",
                LAYER_SYS => "sapi",
                LAYER_MU => "marshalling",
                LAYER_TCTI => "tcti",
                LAYER_RESMGR => "resource manager",
                LAYER_RESMGR_TPM => "resource manager (tpm)",
                _ => "tss",
            };
            format!("{layer_name} error {rc:#x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tss_esapi::traits::{Marshall, UnMarshall};

    #[test]
    fn left_pad_keeps_short_values_and_rejects_long_ones() {
        let padded = left_pad(&[1, 2]).unwrap();
        assert_eq!(&padded[..30], &[0u8; 30]);
        assert_eq!(&padded[30..], &[1, 2]);
        assert_eq!(left_pad(&[7; 32]).unwrap(), [7; 32]);
        assert!(left_pad(&[7; 33]).is_none());
    }

    #[test]
    fn templates_are_p256_and_round_trip_through_marshalling() {
        let key = key_template().unwrap();
        let bytes = key.marshall().unwrap();
        assert_eq!(Public::unmarshall(&bytes).unwrap(), key);
        // Framing only: the template's empty unique field gives the all-zero "point", which
        // the SPKI conversion later rejects as not on the curve.
        assert_eq!(p256_point(&key).unwrap().len(), 65);

        let primary = primary_template().unwrap();
        assert_eq!(
            p256_point(&primary),
            Err("not a signing-only key"),
            "the storage primary must never be accepted as a signing key"
        );
        let Public::Ecc { unique, .. } = &primary else {
            panic!("primary template is not ECC");
        };
        assert_eq!(unique.x().value(), &[0u8; 32]);
        assert_eq!(unique.y().value(), &[0u8; 32]);
    }

    #[test]
    fn error_layers_are_told_apart() {
        // TCTI layer IO error, as a broken swtpm socket reports it.
        let io = tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(0x000a_000a));
        assert!(is_link_failure(io));
        assert!(!is_rejected_object(io));
        assert_eq!(describe(io), "tcti error 0xa000a");
        // TPM_RC_INTEGRITY on parameter 1 (0x1df): what TPM2_Load says after TPM2_Clear.
        let integrity = tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(0x0000_01df));
        assert!(!is_link_failure(integrity));
        assert!(is_rejected_object(integrity));
        // TPM_RC_OBJECT_MEMORY (0x902) is a warning: never "key unusable".
        let memory = tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(0x0000_0902));
        assert!(!is_link_failure(memory));
        assert!(!is_rejected_object(memory));
        assert!(is_out_of_slots(memory));
        assert!(matches!(
            classify("TPM2_Load", memory),
            Fault::OutOfSlots(_)
        ));
        assert!(!is_out_of_slots(integrity));
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn device_tctis_parse_without_the_regex_parser_and_network_ones_by_feature() {
        for device in ["device", "device:/dev/tpmrm0"] {
            assert!(
                matches!(parse_tcti(device), Ok(TctiNameConf::Device(_))),
                "{device}"
            );
        }
        assert_eq!(
            parse_tcti("device:/dev/tpmrm0").ok(),
            "device:/dev/tpmrm0".parse::<TctiNameConf>().ok(),
            "same meaning as tss-esapi's parser"
        );
        let swtpm = parse_tcti("swtpm:host=127.0.0.1,port=2321");
        assert_eq!(
            swtpm.is_ok(),
            cfg!(feature = "network-tcti"),
            "{:?}",
            swtpm.err()
        );
        assert!(parse_tcti("no-such-tcti:foo").is_err());
    }
}
