fn main() {
    println!("credproxy: not built yet");
}
