//! What only the lab's tests need.

/// Whether network namespaces work here (root); CI sets SEGUE_REQUIRE_NETNS, which turns a
/// missing one into a failure instead of a skip.
pub fn netns_available() -> bool {
    crate::common::available_or_required(
        segue_lab::netns::available(),
        "SEGUE_REQUIRE_NETNS",
        "network namespaces",
    )
}
