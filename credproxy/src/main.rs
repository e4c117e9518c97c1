fn main() {
    std::process::exit(credproxy::run::main_entry());
}
