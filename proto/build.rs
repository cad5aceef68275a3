fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/agentgate.proto");
    tonic_prost_build::configure().compile_protos(&["proto/agentgate.proto"], &["proto"])?;
    Ok(())
}
