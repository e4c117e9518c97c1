fn main() {
    println!("gateway: not built yet");
}
