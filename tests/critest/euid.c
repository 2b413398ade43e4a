// Stand-in for the program of the e2e nonewprivs image (tests/critest): installed
// set-user-ID root, it prints the effective uid it runs with, so a container with
// no_new_privs prints its own uid and one without prints 0.
#include <stdio.h>
#include <unistd.h>

int main(void) {
  printf("Effective uid: %d\n", (int)geteuid());
  return 0;
}
