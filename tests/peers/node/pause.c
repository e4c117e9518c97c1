/* The pod sandbox's "pause" process for the node end-to-end tests (tests/src/node.rs): holds the pod's
 * namespaces, reaps orphaned children (it may be PID 1), exits 0 on SIGTERM/SIGINT. Built static by
 * tests/peers/install-node.sh and imported as registry.k8s.io/pause:3.10, the sandbox image containerd asks for. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction terminate = {0}, child = {0};
  terminate.sa_handler = on_terminate;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGTERM, &terminate, NULL);
  sigaction(SIGINT, &terminate, NULL);
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
