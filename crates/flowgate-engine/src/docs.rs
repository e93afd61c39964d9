//! Documentation views of loaded versions (OpenAPI, HTML, compatibility).

use flowgate_docs::FlowDoc;

use crate::registry::LoadedVersion;

/// The documentation view of a loaded version.
pub fn flow_doc(v: &LoadedVersion, live: bool) -> FlowDoc<'_> {
    FlowDoc::new(v.flow.as_str(), v.number, v.manifest(), v.package(), live)
}

impl crate::Engine {
    /// The published (not draft, not retired) version numbers of a flow,
    /// oldest first, as the portal lists them.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub async fn published_versions(
        &self,
        flow: &flowgate_core::FlowName,
    ) -> crate::Result<Vec<i64>> {
        Ok(self
            .versions_of(flow)
            .await?
            .iter()
            .filter(|v| v.status == flowgate_store::VersionStatus::Published)
            .map(|v| i64::from(v.version))
            .collect())
    }

    /// The version a page of version `n` is compared against: the live
    /// version; for the live version itself, the latest non-draft version
    /// before it (what its publish reported). `None` when there is none.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow, flow.version = n))]
    pub async fn compatibility_base(
        &self,
        flow: &flowgate_core::FlowName,
        n: i64,
    ) -> crate::Result<Option<i64>> {
        if let crate::LiveState::Live(l) = self.registry().live_state(flow).await? {
            if l != n {
                return Ok(Some(l));
            }
        }
        Ok(self
            .versions_of(flow)
            .await?
            .iter()
            .map(|v| (i64::from(v.version), v.status))
            .filter(|(m, st)| *m < n && *st != flowgate_store::VersionStatus::Draft)
            .map(|(m, _)| m)
            .max())
    }
}
