/* The benchmark's FastCGI ceiling: a libfcgi responder that does no work.
 * It reads each request's body whole (as Mailgate does) and answers a fixed
 * 200 JSON, with THREADS workers sharing one Unix socket the way Mailgate's
 * do. Built and run by Benchmarks/run.sh:  noop-responder SOCKET THREADS */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static int listen_fd;
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *unused) {
    (void)unused;
    FCGX_Request request;
    char buffer[65536];
    static const char answer[] =
        "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\": \"ok\"}\n";
    if (FCGX_InitRequest(&request, listen_fd, 0) != 0) return NULL;
    for (;;) {
        pthread_mutex_lock(&accept_lock);
        int accepted = FCGX_Accept_r(&request);
        pthread_mutex_unlock(&accept_lock);
        if (accepted < 0) break;
        while (FCGX_GetStr(buffer, sizeof buffer, request.in) > 0) {}
        FCGX_PutStr(answer, sizeof answer - 1, request.out);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET THREADS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    if (threads < 1 || threads > 1024) {
        fprintf(stderr, "THREADS must be 1-1024\n");
        return 2;
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "FCGX_Init failed\n");
        return 1;
    }
    listen_fd = FCGX_OpenSocket(argv[1], 1024);
    if (listen_fd < 0) {
        fprintf(stderr, "cannot listen on %s\n", argv[1]);
        return 1;
    }
    if (chmod(argv[1], 0660) != 0) {
        perror("chmod");
        return 1;
    }
    /* libfcgi's SIGTERM handler only sets a shutdown flag, and threads in
     * accept stay there (the bench had to KILL it): block SIGTERM and
     * SIGINT in every thread and wait for them here, so TERM ends it. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0) {
        fprintf(stderr, "pthread_sigmask failed\n");
        return 1;
    }
    pthread_t ids[1024];
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&ids[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    int signal_number = 0;
    if (sigwait(&stop, &signal_number) != 0) {
        fprintf(stderr, "sigwait failed\n");
        return 1;
    }
    return 0;
}
