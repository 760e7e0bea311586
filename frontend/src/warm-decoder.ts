// Warms up the JPEG-LS decoder in the image loader's web workers while the
// viewer starts, so that the first real frame is not decoded by cold code.
//
// V8 first runs WebAssembly with its baseline compiler and optimizes a
// function only once it has run for a while. A few decodes of a small frame
// are enough for that: the worker then decoded a 1870 x 1870 12-bit
// radiograph in about 135 ms instead of 200 ms (headless Chromium). They also
// start the worker and load the codec before the first frame arrives.
//
// NOTE: "decodeTask" and its arguments are internals of
// @cornerstonejs/dicom-image-loader 4.22, not a documented API; after an
// upgrade the warm-up may fail, silently, and the first decode is slow again.

import { Enums, getWebWorkerManager } from "@cornerstonejs/core";

/** JPEG-LS (PS3.5 A.4.3), 64 x 64, 12 bits: noise, so that every coding path runs. */
const WARM_UP_FRAME =
  "/9j/9wALDABAAEABAREA/9oACAEBAAAAANHn0rJONE3ZY7ilY+9Jn7PdIWrFQnqpFWim2ipyUkP16hXUN613PyEOQiR40GfOlxZcGBpJDXAg2O1a1ZPRRkhfG3KoQo33DPkJcylBk3Ig3Z8KSei7KsEjTkmeaOBHQxHMLZUoUJ9lmYs6RFiC2aaKDOoSr11w3zDGu5QykjVhTzW10cy5dYxri0ZMXGNM/0Zo07NPOSPeNZ9Gs0ZHarNM6YlfrtPy+wQpFMp0jO/ds8gwZI+yRPMmRT0ZFX2r1iPiRrUZ5rqmKQhaTajib3/LKGiKuX5TUq1kJtrpqfeTRKmT10qwqJJirzJxtxDu4nWmFu7Z8S3RWy4Q7WY5E6ZPCZLWWqU1OOGUQXiCWKDm2ruUpcPk6tFZvlbXs6qFTqmXrmHk7zreVKPrSWJTloQstjepjOk3Qzpjn5mY/rlMPI8hLbSxPva4l84RbvfLHVkytHEa+dSRWJI7Lh68fvQpERJTfOvZk8pZKk/RD945qtiKZrq64awimkqfiqWszNqJxLW1mUnFpqy7KvkzgSslb0wlMW78lVrnI7IZ2quVoomchi6gouK2CSG9iq+Yp3SBUNOJRwrQBBnV02AUfEvrtMf9SkU3uQtDJa5LbRGl3qOhpNEr9Uv1qlh+IkkTiMVvNRrU/bi9q3T5YojN5vJxeOrmlTNndY2FkWonkaVLunMWfqScydOWrVORCEpilVrFLYQvWaV+tRD5Kx7oKOfF6fxCEWupH0V1i/oKGlJZCYpaubWJSxiy6J/52cdLmMSp5MQQ+FVv2titwnv6VUkvYbubSpdVVObl630joJ9SYxasanvROC9Pp5EUkjjEttufWxVLm0npSdNIWomFSqVe9RlIdU3S23KXyLb8yXPaRl53MS5vTjdZVthOOUL2FSLY7d3JmWlKVv8lcroiLF20o3VOpmL8libXP8RfqWxpdqe+ZnMxpLXBCZaW2c9NUvK+YhoqP+aHPpin+3KzYmkR/2l0NZCo66cfn5o2421UROk05yt9t9LXYV3FolJKxBK+TurWN3NWwS5KKWSvvHr4hN1n9QyGMvDl90+N8moleUWQW1OWphcqymtUxsMp/EzitRNtIZElEN2Xr5ymIO7DMrNv8rSbWWU7nt9JhKNQpCNe41EEWtkq9zarnajK8S9+zC6iE5LuVmq4m0zZDZ7m0iUAp9NmYxVsEui1pb6nmOkhfooe5v3TNvdlWtMoZ6kv0/ZKc45UtVq+ax/0idS1pM1M8UjqmL3IdOrUhFLt1Bke/0Xc3yPf646sl6HFoo0ZevEkoJ3i/cu6JRnEXKKcgq2qfRSK8r96ClfK040r1O0m9uWQpMJv00jvPnJQu4WtqinpXK2U1EnEcrR9Wau0OXIYn6ZGSWnkvRnQ9JZEU+nJr9LbRBSyaLQV+fH16FJnupUai8YrYUikMLCGOhzntjWRKWvbiFIx4d3v5/HYlFeVDSatxDZjX93VmempP8xH5T5do3qbi2kk6yambQheETvJ8FGYW2q/YBg6URurSTb5fbLI03acoZqibk5DFbhHfyv7ikq/mkKgdDLtPUgtb0f+ohGkzb4o5hEEVDCylHsdnKx+CTsgcT229cXMZRRCUs+Nxs2hFkmMciezZ+XfMWTF5V22osjiNREOUv6ZJLybxLft/Gb7Ox0wXWwxebuV6fpiN9E7n95VjOUu0i25RvygqsmGbtqXakd+woxtM/mosq7XWkxWY58+tv66OziW4pyKYg17dv8lEK9asVmLlHEkqUhyoRW3ssmOw49IRT0L/UUQtKr7GTe8UIUlPpWp3flO7Oobkpj+IJakgjvluGPz8RME+dTEvvTXyOHb47cq/I68kWorrXfj1d9m0wvFLT4scsIOxbUMwta/QQ/1N62oraiyvYt1t4jVudkOZ33zX3nlFe+41LBF75FDSqXTjriDYgpIhNqn9rK1JDyobjQhCLzLJp7JVvta9TjIeyIjEURjVEN5E2ueso62q5TcZS6VeVlins9Jaat3+ZkhXk+nkv2MitjEohpbSYd6nQLR3ks7mNemrlnLeRaKIb0eS9QngFqEEMUUYOkWwFLPyl6pRvAFPVhUGDd9LLb8WShKyXqzKgroon2WTBBXlv8S2bPuFp8llOVNDz6rcizz3qLE4zyJq4ecrCyGcW0/ZLkoMM2Wqj9+rZZS9IcSvkLUXKG0Qeh6adSV25+PYMJ1EEa/WxdIzYZsTrL56+FN71WpWcEQgiWX2vxflbyCufkOhvJ6Gp5dtg/ifXlqSjlxqE8tuKSvHLY5cE09dk2SVtuKx64XRbe6usF23f95w3TFpyKXijH2pD0KJ6FqiLIemD0svX2tOkcqTtYklGJ23POVpbbOXgtKcqXdvveqbTOYTrvQf0SRAVBLNOYjKZ7B1EKtqvl579DHuxaUTyfy0p9xmOQDQQykWTqahq1DiWOTO4SF9/ybMWf0AJOaUlDXTsTlvLz0TYn1N98w3F1XQW+yU0pdIvirYmyO4mI5be/1ur8pKI5y9r0477RLmp6X/s7aIOuXL4h6VmZJ9YdOI+FNGlFCkoYUdy6Vnz6YbE9i0ZKqhWq442QqZy0VjJQnyHXkvINjku+fjFIteJfSz8LKlq56FzJFPD9SmUtFaaFqWdLe9NEE6H4oJEO4ln2aEJsTLTilsJZJ7PJVvk0gKv6aTFjmkxw0c7iNpiqmTU+nlI6GpJUvcrSLiW0nDBOSrC12nKfr3IKjV4hVNfrE7n8noqlVKqLUTT3YQOqDK4h+LJXMp8KyX+GeCtpF1slGqZ/oMpOYXdyViXrZOMfVHXGXU5dGh3s6ZdEtCDE2hR+QUSRI983VaEC9MaZXq19SfFasilvWR8sQTFMmrWfe9SZSTCM28Qu6Jl5XyvdQQdOZRvXJY06gfdspF5PJSFZBCGVIrFS/eLXkjauvJC46Ipbl7NNpPlvW+3dGx/QlKctMnKT7PfzkNKLQ7qirBjJFg5BJ5FhPjkfnsYV5H4UceocK7bC08jkoW4pWC+I5hpexCijwrFLJy3NxtOIyin1b0bRXIan3rogITyeZNZEENIn8Uq/QukdIRylMIReviImjbaXWSqa3Nfeq3a+vHL7hd8S5CvVq4n9jp9vU4lymIEQRZwtkbKfrISurUcj60aLshmmdUtYiGpJX+dlkooMJPtpjIxE3KQ3fUlV0rtZeIuo65mQYmr1UheXbwioSklUxyoUKVdeQ8nu1aEeTlC/HV5RHHXQolSCXuh6re5CUWN7s59X71Se+dHZP0ZLM/mKgZz2t85JF01cSikG2j6ZulIsTb1TPLdqyVNksjs8ojn+gjCEuzCSSEOKZ7/pJ5SYfnfxbWvlaxiVESnlKsejcLlso6bIn24QSjCK/7QpbkNtCVkWU+vD/2Q==";
const JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80";
const DECODES_PER_WORKER = 6;

function frameBytes(): Uint8Array {
  return Uint8Array.from(atob(WARM_UP_FRAME), (c) => c.charCodeAt(0));
}

/** Decode the small frame a few times on each of `workers` workers. */
export function warmUpDecoder(workers: number): Promise<void> {
  const manager = getWebWorkerManager();
  const decodeOnce = () =>
    manager.executeTask(
      "dicomImageLoader",
      "decodeTask",
      {
        imageFrame: {
          rows: 64,
          columns: 64,
          samplesPerPixel: 1,
          bitsAllocated: 16,
          bitsStored: 12,
          highBit: 11,
          pixelRepresentation: 0,
          photometricInterpretation: "MONOCHROME2",
        },
        transferSyntax: JPEG_LS_LOSSLESS,
        pixelData: frameBytes(),
        options: { preScale: { enabled: false } },
        decodeConfig: {},
      },
      { requestType: Enums.RequestType.Compute },
    );
  const chains = Array.from({ length: workers }, async () => {
    for (let i = 0; i < DECODES_PER_WORKER; i++) {
      await decodeOnce();
    }
  });
  return Promise.all(chains).then(
    () => undefined,
    () => undefined, // only a warm-up: the real decode reports its own failure
  );
}
