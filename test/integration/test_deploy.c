/* The deployment files, checked statically (no container engine or cluster runs in the test
 * environment): test/deploy/check_deploy.py parses every YAML file under deploy/, follows
 * the kustomizations, and checks probes, security contexts, drain timing, ports and paths
 * against deploy/raproxy.example.yaml, the Dockerfile's runtime packages against
 * `ldd raproxy`, its flags against `raproxy --help`, and the systemd unit. */
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK_TIMEOUT_MS 120000

static void run_checker(const char *only)
{
    char script[1024], binary[1024], log[1024];
    snprintf(script, sizeof script, "%s/test/deploy/check_deploy.py", rpt_src());
    snprintf(binary, sizeof binary, "%s/raproxy", rpt_bin());
    char *dir = rpt_tmpdir();
    cr_assert_not_null(dir);
    snprintf(log, sizeof log, "%s/check_deploy.log", dir);
    const char *argv_all[] = {"/usr/bin/python3", script, rpt_src(), binary, NULL};
    const char *argv_only[] = {"/usr/bin/python3", script, "--only", only, rpt_src(), binary, NULL};
    int rc = rpt_run(only ? argv_only : argv_all, CHECK_TIMEOUT_MS, log);
    if (rc != 0) {
        /* The failed checks, one a line, in the test output. */
        uint8_t *out = rpt_read_file(log, NULL);
        cr_log_error("check_deploy.py %s exited %d:\n%s", only ? only : "(all)", rc,
                     out ? (const char *)out : "(no output)");
        free(out);
    }
    rpt_rmdir(dir);
    free(dir);
    cr_assert_eq(rc, 0, "deployment checks failed (see the log above)");
}

Test(deploy, every_yaml_file_parses)
{
    run_checker("yaml");
}

Test(deploy, kubernetes_manifests_are_consistent_with_the_example_config)
{
    run_checker("k8s");
}

Test(deploy, dockerfile_installs_exactly_the_runtime_libraries_and_uses_known_flags)
{
    run_checker("dockerfile");
}

Test(deploy, systemd_unit_is_hardened_and_reloads_with_sighup)
{
    run_checker("systemd");
}

Test(deploy, docs_cover_ejbca_ra_mode_and_every_environment_override)
{
    run_checker("docs");
}
