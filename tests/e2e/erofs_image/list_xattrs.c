/* Prints each user-visible extended attribute of each PATH as "PATH NAME=VALUE", in
 * listxattr order sorted by the caller. Linked statically into the layered test image
 * of erofs_e2e.sh (busybox has no getfattr). Test tooling only. */
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    char names[4096];
    ssize_t len = llistxattr(argv[i], names, sizeof(names));
    if (len < 0) continue;
    for (ssize_t at = 0; at < len; at += (ssize_t)strlen(names + at) + 1) {
      char value[1024];
      ssize_t got = lgetxattr(argv[i], names + at, value, sizeof(value) - 1);
      if (got < 0) got = 0;
      value[got] = '\0';
      printf("%s %s=%s\n", argv[i], names + at, value);
    }
  }
  return 0;
}
