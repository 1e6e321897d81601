/* raproxy: wiring only. Parses flags, loads the configuration, starts loops and workers. */
#include "raproxy/err.h"
#include "raproxy/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: raproxy --config FILE [--check-config]\n"
                 "       raproxy --version | --help\n"
                 "\n"
                 "  -c, --config FILE   YAML configuration (see README.md)\n"
                 "      --check-config  validate the configuration and exit (1 on error)\n"
                 "  -V, --version       print version and build information\n"
                 "  -h, --help          this text\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'V':
            printf("raproxy %s\n", RAPROXY_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'c':
        case 'C':
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    usage(stderr);
    return 2;
}
