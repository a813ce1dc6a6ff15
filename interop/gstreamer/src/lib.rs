//! Empty: this package exists to build its dependency, the `rsrtp` GStreamer plugin.
