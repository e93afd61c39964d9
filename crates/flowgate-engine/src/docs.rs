//! Documentation views of loaded versions (OpenAPI, HTML, compatibility).

use flowgate_docs::FlowDoc;

use crate::registry::LoadedVersion;

/// The documentation view of a loaded version.
pub fn flow_doc(v: &LoadedVersion, live: bool) -> FlowDoc<'_> {
    FlowDoc::new(v.flow.as_str(), v.number, v.manifest(), v.package(), live)
}
