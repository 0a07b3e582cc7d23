export default function Greeting() {
  return <h1>Hello from Next.js</h1>;
}
