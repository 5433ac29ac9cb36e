/* The benchmark's two C references, one libfcgi responder with THREADS
 * workers sharing one Unix socket the way Mailgate's do. Each request's
 * body is read whole (as Mailgate does), then:
 *   - without SMTP_PORT, the FastCGI ceiling: nothing else; a fixed 200;
 *   - with SMTP_PORT, the floor of a blocking thread-per-request send: no
 *     parsing, no token check and no MIME, only the SMTP exchange Mailgate
 *     has with the sink for each send, on a connection each worker keeps
 *     open ("RSET, MAIL, RCPT, DATA" in one write (PIPELINING), the four
 *     replies, a fixed small message and its ".", the 250), then a 200.
 * What the second cannot beat, Mailgate's design cannot either; what it
 * leaves to Mailgate is Mailgate's own work. Built and run by
 * Benchmarks/run.sh:  responder SOCKET THREADS [SMTP_PORT] */
#include <arpa/inet.h>
#include <fcgiapp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int listen_fd;
static int smtp_port;  /* 0: the no-op responder */
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

struct smtp {
    int fd;
    char buffer[4096];
    size_t used;
};

/* Reads until `replies` final reply lines ("NNN " at a line's start) have
 * arrived; returns the first digit of the last one, or -1 on failure. */
static int read_replies(struct smtp *smtp, int replies) {
    int last = -1;
    while (replies > 0) {
        char *end;
        while ((end = memchr(smtp->buffer, '\n', smtp->used)) != NULL) {
            size_t length = (size_t)(end - smtp->buffer) + 1;
            if (length >= 4 && smtp->buffer[3] == ' ') {
                last = smtp->buffer[0] - '0';
                replies--;
            }
            memmove(smtp->buffer, smtp->buffer + length, smtp->used - length);
            smtp->used -= length;
            if (replies == 0) return last;
        }
        if (smtp->used == sizeof smtp->buffer) return -1;
        ssize_t got = recv(smtp->fd, smtp->buffer + smtp->used, sizeof smtp->buffer - smtp->used, 0);
        if (got <= 0) return -1;
        smtp->used += (size_t)got;
    }
    return last;
}

static int send_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL);
        if (sent <= 0) return -1;
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

static int smtp_open(struct smtp *smtp) {
    smtp->used = 0;
    smtp->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (smtp->fd < 0) return -1;
    int one = 1;
    setsockopt(smtp->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)smtp_port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char ehlo[] = "EHLO relay.localhost\r\n";
    if (connect(smtp->fd, (struct sockaddr *)&address, sizeof address) != 0 || read_replies(smtp, 1) != 2
        || send_all(smtp->fd, ehlo, sizeof ehlo - 1) != 0 || read_replies(smtp, 1) != 2) {
        close(smtp->fd);
        smtp->fd = -1;
        return -1;
    }
    return 0;
}

static int smtp_send(struct smtp *smtp) {
    static const char envelope[] =
        "RSET\r\nMAIL FROM:<bench@localhost>\r\nRCPT TO:<bench@example.com>\r\nDATA\r\n";
    static const char message[] =
        "From: bench@localhost\r\nTo: bench@example.com\r\nSubject: Mailgate bench\r\n\r\n"
        "One of many identical messages from make bench.\r\n.\r\n";
    if (smtp->fd < 0 && smtp_open(smtp) != 0) return -1;
    if (send_all(smtp->fd, envelope, sizeof envelope - 1) == 0 && read_replies(smtp, 4) == 3
        && send_all(smtp->fd, message, sizeof message - 1) == 0 && read_replies(smtp, 1) == 2) {
        return 0;
    }
    close(smtp->fd);
    smtp->fd = -1;
    return -1;
}

static void *worker(void *unused) {
    (void)unused;
    FCGX_Request request;
    struct smtp smtp = {.fd = -1};
    char buffer[65536];
    static const char ok[] =
        "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\": \"ok\"}\n";
    static const char failed[] =
        "Status: 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"status\": \"error\"}\n";
    if (FCGX_InitRequest(&request, listen_fd, 0) != 0) return NULL;
    for (;;) {
        pthread_mutex_lock(&accept_lock);
        int accepted = FCGX_Accept_r(&request);
        pthread_mutex_unlock(&accept_lock);
        if (accepted < 0) break;
        while (FCGX_GetStr(buffer, sizeof buffer, request.in) > 0) {}
        if (smtp_port == 0 || smtp_send(&smtp) == 0) {
            FCGX_PutStr(ok, sizeof ok - 1, request.out);
        } else {
            FCGX_PutStr(failed, sizeof failed - 1, request.out);
        }
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s SOCKET THREADS [SMTP_PORT]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    smtp_port = argc == 4 ? atoi(argv[3]) : 0;
    if (threads < 1 || threads > 1024 || (argc == 4 && (smtp_port < 1 || smtp_port > 65535))) {
        fprintf(stderr, "THREADS must be 1-1024 and SMTP_PORT 1-65535\n");
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
