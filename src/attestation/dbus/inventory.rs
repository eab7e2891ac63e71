//! What links an attested peer's objects for OpenBMC's mapper and bmcweb: the upstream
//! `xyz.openbmc_project.Association.Definitions` on the ComponentIntegrity object and on
//! the peer's certificate objects, an `xyz.openbmc_project.Inventory.Item` standing for the
//! peer BMC (the component a ComponentIntegrity object authenticates), and this BMC's TPM
//! as `xyz.openbmc_project.Inventory.Item` + `.Inventory.Item.TrustedComponent`.
//!
//! Association names (forward, reverse) are the upstream YAML's:
//! - ComponentIntegrity `authenticating` → the peer's inventory item (`authenticated_by`),
//!   which bmcweb resolves for `TargetComponentURI`;
//! - IdentityAuthentication `responder_identitified_by` → the peer's leaf certificate
//!   (`identifying_responder`), as `IdentityAuthentication.interface.yaml` spells it, and
//!   the certificate's `identifying_responder` → the ComponentIntegrity object
//!   (`responder_identified_by`), as `Certificate.interface.yaml` spells the reverse. The
//!   two upstream files disagree on the spelling; both are served, so either resolves.

// The interface macro generates undocumented helpers (`*_changed`).
#![allow(missing_docs)]

/// Where our inventory objects live (the mapper finds them under the inventory namespace).
pub const INVENTORY_ROOT: &str = "/xyz/openbmc_project/inventory";
/// This BMC's TPM.
pub const TPM_PATH: &str = "/xyz/openbmc_project/inventory/bmc_pairing/tpm";
/// The attested peers' inventory items.
pub const PEER_ITEMS_PATH: &str = "/xyz/openbmc_project/inventory/bmc_pairing/peers";

/// The inventory item standing for attested peer `id`.
pub fn peer_item_path(id: &str) -> String {
    format!("{PEER_ITEMS_PATH}/{id}")
}

/// One association: (forward name, reverse name, endpoint path).
pub type Association = (String, String, String);

/// The associations of a peer's ComponentIntegrity object (which also carries its
/// IdentityAuthentication): the peer it authenticates and the leaf that identified it.
pub fn component_associations(id: &str, leaf: Option<&str>) -> Vec<Association> {
    let mut out = vec![(
        "authenticating".to_owned(),
        "authenticated_by".to_owned(),
        peer_item_path(id),
    )];
    if let Some(leaf) = leaf {
        out.push((
            "responder_identitified_by".to_owned(),
            "identifying_responder".to_owned(),
            leaf.to_owned(),
        ));
    }
    out
}

/// The associations of a peer's leaf certificate: the ComponentIntegrity (with its
/// IdentityAuthentication) whose responder it identifies.
pub fn leaf_associations(component: &str) -> Vec<Association> {
    vec![(
        "identifying_responder".to_owned(),
        "responder_identified_by".to_owned(),
        component.to_owned(),
    )]
}

/// The associations of this BMC's TPM: upstream TrustedComponent's `protecting` →
/// this BMC's own inventory item (`protected_by`), when the integrator names it
/// (`tpm_protects`; the path is platform-specific, so there is no default).
pub fn tpm_associations(protects: Option<&str>) -> Vec<Association> {
    protects
        .map(|item| {
            (
                "protecting".to_owned(),
                "protected_by".to_owned(),
                item.to_owned(),
            )
        })
        .into_iter()
        .collect()
}

/// `xyz.openbmc_project.Association.Definitions`.
#[derive(Debug)]
pub struct Definitions {
    associations: Vec<Association>,
}

impl Definitions {
    /// Serves `associations`.
    pub fn new(associations: Vec<Association>) -> Self {
        Definitions { associations }
    }

    /// Shows `associations` from now on, with PropertiesChanged when they differ.
    ///
    /// # Errors
    /// zbus errors emitting the signal.
    pub async fn update(
        &mut self,
        associations: Vec<Association>,
        emitter: &zbus::object_server::SignalEmitter<'_>,
    ) -> zbus::Result<()> {
        if self.associations != associations {
            self.associations = associations;
            self.associations_changed(emitter).await?;
        }
        Ok(())
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Association.Definitions")]
impl Definitions {
    /// (forward, reverse, endpoint) triples for the mapper.
    #[zbus(property(emits_changed_signal = "true"), name = "Associations")]
    async fn associations(&self) -> Vec<Association> {
        self.associations.clone()
    }

    // Writable in the upstream YAML, so introspected as such; the links follow the
    // attestations only.
    #[zbus(property, name = "Associations")]
    async fn set_associations(&mut self, _value: Vec<Association>) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::PropertyReadOnly(
            "the associations follow the attestations".into(),
        ))
    }
}

/// `xyz.openbmc_project.Inventory.Item`: a name and presence.
#[derive(Debug)]
pub struct Item {
    pretty_name: String,
}

impl Item {
    /// An item named `pretty_name`, present.
    pub fn new(pretty_name: impl Into<String>) -> Self {
        Item {
            pretty_name: pretty_name.into(),
        }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Inventory.Item")]
impl Item {
    /// The human-readable name.
    #[zbus(property(emits_changed_signal = "true"), name = "PrettyName")]
    async fn pretty_name(&self) -> String {
        self.pretty_name.clone()
    }

    #[zbus(property, name = "PrettyName")]
    async fn set_pretty_name(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::PropertyReadOnly(
            "set by bmc-attestation".into(),
        ))
    }

    /// Always true: the object exists while the item does.
    #[zbus(property(emits_changed_signal = "true"), name = "Present")]
    async fn present(&self) -> bool {
        true
    }

    #[zbus(property, name = "Present")]
    async fn set_present(&mut self, _value: bool) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::PropertyReadOnly(
            "set by bmc-attestation".into(),
        ))
    }
}

/// `xyz.openbmc_project.Inventory.Item.TrustedComponent` of this BMC's TPM.
#[derive(Debug)]
pub struct TrustedComponent;

#[zbus::interface(name = "xyz.openbmc_project.Inventory.Item.TrustedComponent")]
impl TrustedComponent {
    /// Unknown: whether the TPM behind `/dev/tpmrm0` is a discrete chip or integrated
    /// (firmware TPM) is not something this daemon can tell.
    #[zbus(
        property(emits_changed_signal = "const"),
        name = "TrustedComponentType"
    )]
    async fn trusted_component_type(&self) -> String {
        "xyz.openbmc_project.Inventory.Item.TrustedComponent.ComponentAttachType.Unknown".into()
    }
}
