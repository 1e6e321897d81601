/* A device enrolling with Bouncy Castle's CMP classes (bcpkix), the way a Java client
 * built on them does: ir protected by the device's vendor key (its chain in extraCerts),
 * a signature POP for a new P-256 key; on `waiting` (RFC 9483 §4.4) it polls with pollReq
 * after each pollRep's checkAfter; the final ip must be accepted and protected by the RA
 * certificate; it confirms with certConf and expects pkiConf. Every answer must name the
 * transaction and echo the nonce just sent.
 *
 *   java -cp bcprov.jar:bcpkix.jar:bcutil.jar BcCmpClient.java URL DEVICE_CERT DEVICE_KEY
 *        CHAIN RA_CERT CERT_OUT TOTAL_TIMEOUT_S
 *
 * Prints one line per message ("waiting", "pollRep checkAfter=N", "ip accepted",
 * "pkiConf"); exit 0 with the certificate in CERT_OUT, else a line starting "FAIL". */
import java.io.ByteArrayOutputStream;
import java.io.FileReader;
import java.io.FileWriter;
import java.io.InputStream;
import java.io.OutputStream;
import java.math.BigInteger;
import java.net.HttpURLConnection;
import java.net.URL;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.spec.ECGenParameterSpec;
import java.util.Arrays;
import java.util.Date;

import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.ASN1OctetString;
import org.bouncycastle.asn1.cmp.CMPCertificate;
import org.bouncycastle.asn1.cmp.CertRepMessage;
import org.bouncycastle.asn1.cmp.CertResponse;
import org.bouncycastle.asn1.cmp.ErrorMsgContent;
import org.bouncycastle.asn1.cmp.PKIBody;
import org.bouncycastle.asn1.cmp.PKIHeader;
import org.bouncycastle.asn1.cmp.PKIMessage;
import org.bouncycastle.asn1.cmp.PKIStatus;
import org.bouncycastle.asn1.cmp.PollRepContent;
import org.bouncycastle.asn1.cmp.PollReqContent;
import org.bouncycastle.asn1.crmf.CertReqMessages;
import org.bouncycastle.asn1.x500.RDN;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.SubjectKeyIdentifier;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.cmp.CertificateConfirmationContent;
import org.bouncycastle.cert.cmp.CertificateConfirmationContentBuilder;
import org.bouncycastle.cert.cmp.GeneralPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessageBuilder;
import org.bouncycastle.cert.crmf.CertificateRequestMessageBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x509.SubjectPublicKeyInfo;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaContentVerifierProviderBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;

public class BcCmpClient {
    static final int NONCE_LEN = 16;
    static final SecureRandom RNG = new SecureRandom();

    static String url;
    static X509CertificateHolder devCert, raCert;
    static X509CertificateHolder[] chain;
    static PrivateKey devKey;
    static byte[] txid = new byte[NONCE_LEN];
    static byte[] lastNonce, serverNonce;

    static void fail(String why) {
        System.out.println("FAIL " + why);
        System.exit(1);
    }

    static Object pem(String file) throws Exception {
        try (PEMParser p = new PEMParser(new FileReader(file))) {
            return p.readObject();
        }
    }

    static X509CertificateHolder[] pems(String file) throws Exception {
        java.util.List<X509CertificateHolder> l = new java.util.ArrayList<>();
        try (PEMParser p = new PEMParser(new FileReader(file))) {
            Object o;
            while ((o = p.readObject()) != null)
                l.add((X509CertificateHolder) o);
        }
        return l.toArray(new X509CertificateHolder[0]);
    }

    /* The device's message with `body`, a fresh nonce, protected with its vendor key. */
    static PKIMessage protect(PKIBody body) throws Exception {
        lastNonce = new byte[NONCE_LEN];
        RNG.nextBytes(lastNonce);
        ProtectedPKIMessageBuilder b =
            new ProtectedPKIMessageBuilder(new GeneralName(devCert.getSubject()),
                                           new GeneralName(new X500Name(new RDN[0])))
                .setTransactionID(txid)
                .setSenderNonce(lastNonce)
                .setMessageTime(new Date())
                .setBody(body)
                .addCMPCertificate(devCert);
        Extension ski = devCert.getExtension(Extension.subjectKeyIdentifier);
        if (ski != null)
            b.setSenderKID(SubjectKeyIdentifier.getInstance(ski.getParsedValue()).getKeyIdentifier());
        if (serverNonce != null)
            b.setRecipNonce(serverNonce);
        for (X509CertificateHolder c : chain)
            b.addCMPCertificate(c);
        ContentSigner s = new JcaContentSignerBuilder("SHA256withECDSA").build(devKey);
        return b.build(s).toASN1Structure();
    }

    /* POST it; the answer must belong to the transaction, echo the nonce, and verify under
     * the first certificate of its extraCerts — with byRa, the RA's (waiting, pollRep and
     * the CA's ip that the RA re-signs for a pollReq; the CA's pkiConf is relayed as the CA
     * signed it). */
    static PKIMessage exchange(PKIBody body, boolean byRa) throws Exception {
        byte[] req = protect(body).getEncoded();
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setConnectTimeout(10000);
        c.setReadTimeout(30000);
        c.setRequestProperty("Content-Type", "application/pkixcmp");
        try (OutputStream o = c.getOutputStream()) {
            o.write(req);
        }
        int st = c.getResponseCode();
        if (st != 200)
            fail("HTTP " + st);
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try (InputStream in = c.getInputStream()) {
            in.transferTo(buf);
        }
        PKIMessage m = PKIMessage.getInstance(buf.toByteArray());
        PKIHeader h = m.getHeader();
        if (!Arrays.equals(ASN1OctetString.getInstance(h.getTransactionID()).getOctets(), txid))
            fail("the answer names another transaction");
        if (h.getRecipNonce() == null || !Arrays.equals(h.getRecipNonce().getOctets(), lastNonce))
            fail("the answer does not echo the nonce just sent");
        ProtectedPKIMessage pm = new ProtectedPKIMessage(new GeneralPKIMessage(m));
        if (pm.hasPasswordBasedMacProtection())
            fail("the answer is MAC-protected");
        X509CertificateHolder[] certs = pm.getCertificates();
        if (certs.length == 0)
            fail("the answer carries no protection certificate");
        if (byRa && !certs[0].equals(raCert))
            fail("the answer is not signed by the RA certificate");
        if (!pm.verify(new JcaContentVerifierProviderBuilder().setProvider("BC").build(certs[0])))
            fail("the answer's protection does not verify");
        serverNonce = h.getSenderNonce().getOctets();
        if (m.getBody().getType() == PKIBody.TYPE_ERROR) {
            ErrorMsgContent e = ErrorMsgContent.getInstance(m.getBody().getContent());
            fail("CMP error: " + e.getPKIStatusInfo().getStatusString() + " failInfo "
                 + e.getPKIStatusInfo().getFailInfo());
        }
        return m;
    }

    public static void main(String[] a) throws Exception {
        if (a.length != 7)
            fail("usage: URL DEVICE_CERT DEVICE_KEY CHAIN RA_CERT CERT_OUT TOTAL_TIMEOUT_S");
        Security.addProvider(new BouncyCastleProvider());
        url = a[0];
        devCert = (X509CertificateHolder) pem(a[1]);
        devKey = new JcaPEMKeyConverter().setProvider("BC").getPrivateKey((PrivateKeyInfo) pem(a[2]));
        chain = pems(a[3]);
        raCert = (X509CertificateHolder) pem(a[4]);
        long deadline = System.currentTimeMillis() + Long.parseLong(a[6]) * 1000L;
        RNG.nextBytes(txid);

        KeyPairGenerator g = KeyPairGenerator.getInstance("EC", "BC");
        g.initialize(new ECGenParameterSpec("P-256"));
        KeyPair kp = g.generateKeyPair();
        CertificateRequestMessageBuilder crmb = new CertificateRequestMessageBuilder(BigInteger.ZERO)
            .setSubject(devCert.getSubject())
            .setPublicKey(SubjectPublicKeyInfo.getInstance(kp.getPublic().getEncoded()))
            .setProofOfPossessionSigningKeySigner(
                new JcaContentSignerBuilder("SHA256withECDSA").setProvider("BC").build(kp.getPrivate()));
        PKIBody ir = new PKIBody(PKIBody.TYPE_INIT_REQ,
                                 new CertReqMessages(crmb.build().toASN1Structure()));

        PKIMessage m = exchange(ir, false);
        for (;;) {
            int t = m.getBody().getType();
            if (t == PKIBody.TYPE_INIT_REP) {
                CertResponse r = CertRepMessage.getInstance(m.getBody().getContent()).getResponse()[0];
                int st = r.getStatus().getStatus().intValue();
                if (st == PKIStatus.WAITING) {
                    System.out.println("waiting");
                } else if (st == PKIStatus.GRANTED || st == PKIStatus.GRANTED_WITH_MODS) {
                    break;
                } else {
                    fail("ip status " + st + ": " + r.getStatus().getStatusString());
                }
                /* RFC 9483 §4.4: ask at once */
            } else if (t == PKIBody.TYPE_POLL_REP) {
                PollRepContent p = PollRepContent.getInstance(m.getBody().getContent());
                int after = p.getCheckAfter(0).intValueExact();
                System.out.println("pollRep checkAfter=" + after);
                if (System.currentTimeMillis() + after * 1000L > deadline)
                    fail("still waiting at the deadline");
                Thread.sleep(after * 1000L);
            } else {
                fail("unexpected body " + t);
            }
            m = exchange(new PKIBody(PKIBody.TYPE_POLL_REQ, new PollReqContent(new ASN1Integer(0))), true);
        }
        CertResponse r = CertRepMessage.getInstance(m.getBody().getContent()).getResponse()[0];
        if (!r.getCertReqId().getValue().equals(BigInteger.ZERO))
            fail("certReqId " + r.getCertReqId().getValue());
        CMPCertificate cc = r.getCertifiedKeyPair().getCertOrEncCert().getCertificate();
        X509CertificateHolder cert = new X509CertificateHolder(cc.getX509v3PKCert());
        System.out.println("ip accepted: " + cert.getSubject());
        try (JcaPEMWriter w = new JcaPEMWriter(new FileWriter(a[5]))) {
            w.writeObject(cert);
        }
        CertificateConfirmationContent conf = new CertificateConfirmationContentBuilder()
            .addAcceptedCertificate(cert, BigInteger.ZERO)
            .build(new JcaDigestCalculatorProviderBuilder().build());
        m = exchange(new PKIBody(PKIBody.TYPE_CERT_CONFIRM, conf.toASN1Structure()), false);
        if (m.getBody().getType() != PKIBody.TYPE_CONFIRM)
            fail("certConf answered with body " + m.getBody().getType());
        System.out.println("pkiConf");
    }
}
