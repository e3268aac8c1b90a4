/* The pod sandbox process: holds the pod's namespaces, reaps orphans, exits on INT/TERM.
 * Built static by images.sh into an image FROM scratch (there is no registry to pull one). */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction exit_on = {.sa_handler = stop}, reap_on = {.sa_handler = reap,
                                                                .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGINT, &exit_on, NULL);
    sigaction(SIGTERM, &exit_on, NULL);
    sigaction(SIGCHLD, &reap_on, NULL);
    for (;;)
        pause();
}
