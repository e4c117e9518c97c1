fn main() {
    println!("webhook: not built yet");
}
