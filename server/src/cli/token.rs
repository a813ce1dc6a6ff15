//! `segue token`: a signed URL for a node that requires them (docs/SECURITY.md).

use std::path::PathBuf;

use clap::Args;

use crate::node::access;

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The node's key file; its first key signs.
    #[arg(long)]
    key_file: PathBuf,
    /// What to sign: segue://HOST:PORT/OBJECT (a play) or https://HOST:PORT/FILE (a file
    /// object over HTTP/3).
    url: url::Url,
    /// Seconds the URL stays valid.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Only this client address may use it.
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
}

/// Prints `a.url` signed with the first key of `a.key_file`.
pub fn run(a: TokenArgs) -> anyhow::Result<()> {
    let secrets = access::secrets_from_file(&a.key_file)?;
    access::Keys::new(&secrets).map_err(|e| anyhow::anyhow!("{}: {e}", a.key_file.display()))?;
    let object =
        crate::files::object_of(a.url.path()).map_err(|e| anyhow::anyhow!("{}: {e}", a.url))?;
    let expires = access::now().saturating_add(a.ttl_secs);
    let mut url = a.url.clone();
    url.set_query(Some(&access::grant(
        &secrets[0],
        object.as_str(),
        expires,
        a.ip,
    )));
    println!("{url}");
    Ok(())
}
