//! ctictl csta decode/encode (owned by the codec engineer).
pub fn run(args: &[String]) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
