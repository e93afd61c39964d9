//! Row model of the `flow_versions` table.

use diesel::prelude::*;

use flowgate_core::FlowPackage;

use crate::error::Result;
use crate::models::name;
use crate::schema::flow_versions;
use crate::types::{Version, VersionInfo, VersionStatus};

/// A `flow_versions` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = flow_versions)]
#[diesel(treat_none_as_default_value = false)]
pub struct VersionRow {
    pub flow: String,
    pub version: i32,
    pub status: String,
    pub sha256: String,
    pub files: String,
    pub created_at: i64,
    pub published_at: Option<i64>,
    pub retired_at: Option<i64>,
}

/// A `flow_versions` row without the files.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = flow_versions)]
pub struct VersionInfoRow {
    pub flow: String,
    pub version: i32,
    pub status: String,
    pub sha256: String,
    pub created_at: i64,
    pub published_at: Option<i64>,
    pub retired_at: Option<i64>,
}

impl VersionInfoRow {
    /// Converts to the public metadata.
    pub fn into_info(self) -> Result<VersionInfo> {
        Ok(VersionInfo {
            flow: name(&self.flow)?,
            version: self.version.max(0) as u32,
            status: VersionStatus::parse(&self.status)?,
            sha256: self.sha256,
            created_at: self.created_at,
            published_at: self.published_at,
            retired_at: self.retired_at,
        })
    }
}

impl VersionRow {
    /// Converts to the public version with its files.
    pub fn into_version(self) -> Result<Version> {
        let files = serde_json::from_str(&self.files)?;
        let info = VersionInfoRow {
            flow: self.flow,
            version: self.version,
            status: self.status,
            sha256: self.sha256,
            created_at: self.created_at,
            published_at: self.published_at,
            retired_at: self.retired_at,
        }
        .into_info()?;
        Ok(Version {
            info,
            package: FlowPackage { files },
        })
    }
}
