package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const tomcatHome = "/usr/share/tomcat10"

// startTomcat runs Debian's Tomcat 10 (package tomcat10-common) on a
// loopback port with one web application serving files as they are laid
// out in files (path → content) through Tomcat's DefaultServlet: a real
// servlet container, which reads ";params", case and escapes its own way.
// It skips on a machine without Tomcat, and fails in CI
// (GATEHOUSE_REQUIRE_EXAMPLES=1), which installs it.
func startTomcat(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tomcatHome, "bin", "catalina.sh")); err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
			t.Fatal("Tomcat is not installed (apt-get install tomcat10-common)")
		}
		t.Skip("Tomcat is not installed (apt-get install tomcat10-common): the servlet container test is skipped")
	}
	base := t.TempDir()
	port := freePort(t)
	for _, d := range []string{"conf", "logs", "temp", "work", "webapps/ROOT/WEB-INF"} {
		must(t, os.MkdirAll(filepath.Join(base, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(base, "conf", "server.xml"), []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="`+port+`" address="127.0.0.1" protocol="HTTP/1.1" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false" />
    </Engine>
  </Service>
</Server>
`), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "webapps/ROOT/WEB-INF/web.xml"), []byte(`<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet><servlet-name>default</servlet-name><servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class></servlet>
  <servlet-mapping><servlet-name>default</servlet-name><url-pattern>/</url-pattern></servlet-mapping>
</web-app>
`), 0o644))
	for p, content := range files {
		f := filepath.Join(base, "webapps/ROOT", filepath.FromSlash(p))
		must(t, os.MkdirAll(filepath.Dir(f), 0o755))
		must(t, os.WriteFile(f, []byte(content), 0o644))
	}
	cmd := exec.Command("java", "-Xshare:auto", "-Xms32m", "-Xmx128m",
		"-Dcatalina.base="+base, "-Dcatalina.home="+tomcatHome, "-Djava.io.tmpdir="+filepath.Join(base, "temp"),
		"-cp", filepath.Join(tomcatHome, "bin", "bootstrap.jar")+":"+filepath.Join(tomcatHome, "bin", "tomcat-juli.jar"),
		"org.apache.catalina.startup.Bootstrap", "start")
	logf, err := os.Create(filepath.Join(base, "logs", "stdout.log"))
	must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("tomcat log:\n%s", b)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", port)
	eventuallyWithin(t, 60*time.Second, "tomcat started", func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return "http://" + addr
}
