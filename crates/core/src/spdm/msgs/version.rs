//! GET_VERSION / VERSION (DSP0274 §10.3). Both always travel under version byte 0x10.

use super::{Body, Code, ParseContext};
use crate::spdm::codec::{InvalidMessage, Reader, len_u8, put_u16};

/// GET_VERSION: no fields; Param1 and Param2 are reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetVersion;

impl Body for GetVersion {
    const CODE: Code = Code::GetVersion;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0]);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        r.reserved(2, "GET_VERSION params")?;
        Ok(GetVersion)
    }
}

/// One VersionNumberEntry: `Major[15:12] Minor[11:8] Update[7:4] Alpha[3:0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionNumber(pub u16);

impl VersionNumber {
    /// SPDM 1.2.0.
    pub const V1_2: VersionNumber = VersionNumber(0x1200);

    /// The `major << 4 | minor` byte that messages of this version carry.
    pub fn version_byte(self) -> u8 {
        let [_, high] = self.0.to_le_bytes();
        high
    }
}

/// VERSION: the versions the responder supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// VersionNumberEntry list, in the order sent.
    pub entries: Vec<VersionNumber>,
}

impl Body for Version {
    const CODE: Code = Code::Version;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, 0, len_u8(self.entries.len())]);
        for e in &self.entries {
            put_u16(out, e.0);
        }
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        r.reserved(3, "VERSION params")?;
        let count = r.u8("VersionNumberEntryCount")?;
        let entries = (0..count)
            .map(|_| r.u16("VersionNumberEntry").map(VersionNumber))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Version { entries })
    }
}
