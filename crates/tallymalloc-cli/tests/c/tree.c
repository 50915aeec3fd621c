/* A process tree for `tallymalloc run`: the program forks a child that allocates 3 MiB and
 * leaves by _exit (as a pool's worker does), a child that allocates 5 MiB and is ended by
 * SIGTERM while it waits, and a vfork child that leaves by _exit at once (it shares our memory:
 * it must write nothing). It prints each child's pid on stdout, one line each:
 * "exited PID", "terminated PID", "vforked PID", and exits 0 if every child ended as meant. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void hold(size_t bytes) {
  for (size_t done = 0; done < bytes; done += 1024) {
    char *block = malloc(1024);
    memset(block, 1, 1024); /* kept to the end */
  }
}

int main(void) {
  int ready[2];
  if (pipe(ready) != 0) return 10;
  fflush(stdout);
  pid_t exited = fork();
  if (exited == 0) {
    hold(3 << 20);
    _exit(0);
  }
  pid_t terminated = fork();
  if (terminated == 0) {
    hold(5 << 20);
    if (write(ready[1], "r", 1) != 1) _exit(11);
    for (;;) pause();
  }
  char byte;
  if (read(ready[0], &byte, 1) != 1) return 12;
  kill(terminated, SIGTERM);
  pid_t vforked = vfork();
  if (vforked == 0) _exit(7);
  int status[3];
  waitpid(exited, &status[0], 0);
  waitpid(terminated, &status[1], 0);
  waitpid(vforked, &status[2], 0);
  printf("exited %d\nterminated %d\nvforked %d\n", (int)exited, (int)terminated, (int)vforked);
  hold(1 << 20);
  int as_meant = WIFEXITED(status[0]) && WEXITSTATUS(status[0]) == 0 &&
                 WIFSIGNALED(status[1]) && WTERMSIG(status[1]) == SIGTERM &&
                 WIFEXITED(status[2]) && WEXITSTATUS(status[2]) == 7;
  return as_meant ? 0 : 1;
}
