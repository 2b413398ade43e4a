// Stand-in for Kubernetes' pause image binary (tests/critest): holds the pod's
// namespaces, reaps the children it inherits and exits 0 on SIGINT or SIGTERM.
// Built static at test time; nothing here is copied from the original.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop = {0}, child = {0};
  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGINT, &stop, 0) != 0 || sigaction(SIGTERM, &stop, 0) != 0 ||
      sigaction(SIGCHLD, &child, 0) != 0)
    return 1;
  for (;;) pause();
}
