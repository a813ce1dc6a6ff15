//! The classic CDN edge the lab compares Segue with: nginx as origin and as a caching edge
//! (`proxy_cache`, `slice`, `proxy_cache_lock`) serving HLS cut by ffmpeg from the same files
//! over HTTPS, and a small HLS player with `segue-play`'s buffer and stall accounting.

pub mod nginx;
pub mod player;
pub mod prepare;
pub mod stack;
pub mod ts;
